//! The data shipped with the `fit_your_csv` example are what their comment says.

use std::path::Path;

use models::data::Trajectory;
use models::spiral::spiral_trajectory;

#[test]
fn spiral_small_csv_is_the_spiral_to_its_printed_digits() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/spiral_small.csv");
    let shipped = Trajectory::read_csv(&path).unwrap();
    let exact = spiral_trajectory(101, 10.0).unwrap();
    assert_eq!(shipped.names, ["y0", "y1"]);
    assert_eq!(shipped.len(), exact.len());
    for k in 0..exact.len() {
        assert!((shipped.ts[k] - exact.ts[k]).abs() <= 1e-12, "t[{k}]");
        for d in 0..2 {
            let e = (shipped.y(k)[d] - exact.y(k)[d]).abs();
            assert!(e <= 1e-10, "y[{k}][{d}] differs by {e}");
        }
    }
}
