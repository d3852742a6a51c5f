//! `neuralode`: the command-line program of the workspace.

fn main() {
    println!("neuralode: models are not built yet (see issue 6)");
}
