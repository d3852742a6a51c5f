//! Consistency and order conditions of every tableau, from rooted trees up to order 8.

use ode_solvers::tableau::{ALL_TABLEAUX, Tableau};

#[derive(Clone, Debug)]
struct Tree {
    children: Vec<Tree>,
}

impl Tree {
    fn order(&self) -> usize {
        1 + self.children.iter().map(Tree::order).sum::<usize>()
    }
    fn gamma(&self) -> f64 {
        self.order() as f64 * self.children.iter().map(Tree::gamma).product::<f64>()
    }
    fn canon(&self) -> String {
        let mut v: Vec<String> = self.children.iter().map(Tree::canon).collect();
        v.sort();
        format!("[{}]", v.concat())
    }
    /// All trees obtained by attaching one leaf to some node.
    fn grow(&self) -> Vec<Tree> {
        let mut out = vec![Tree {
            children: {
                let mut c = self.children.clone();
                c.push(Tree { children: vec![] });
                c
            },
        }];
        for (i, ch) in self.children.iter().enumerate() {
            for g in ch.grow() {
                let mut c = self.children.clone();
                c[i] = g;
                out.push(Tree { children: c });
            }
        }
        out
    }
    /// Internal weights g_i = Π_children (A g(child))_i.
    fn g(&self, a: &[Vec<f64>]) -> Vec<f64> {
        let s = a.len();
        let mut out = vec![1.0; s];
        for ch in &self.children {
            let gc = ch.g(a);
            for i in 0..s {
                out[i] *= (0..s).map(|j| a[i][j] * gc[j]).sum::<f64>();
            }
        }
        out
    }
}

fn trees_up_to(p: usize) -> Vec<Vec<Tree>> {
    let mut levels = vec![vec![], vec![Tree { children: vec![] }]];
    for _ in 2..=p {
        let mut seen = std::collections::BTreeMap::new();
        for t in levels.last().unwrap() {
            for g in t.grow() {
                seen.entry(g.canon()).or_insert(g);
            }
        }
        levels.push(seen.into_values().collect());
    }
    levels
}

fn full_a(t: &Tableau) -> Vec<Vec<f64>> {
    let s = t.stages;
    (0..s)
        .map(|i| {
            let mut row = vec![0.0; s];
            row[..t.a[i].len()].copy_from_slice(t.a[i]);
            row
        })
        .collect()
}

/// Largest violation of the order conditions of orders 1..=p for weights `b`.
fn max_violation(a: &[Vec<f64>], b: &[f64], levels: &[Vec<Tree>], p: usize) -> (f64, usize) {
    let mut worst = (0.0, 0);
    for (order, trees) in levels.iter().enumerate().take(p + 1).skip(1) {
        for t in trees {
            let phi: f64 = t.g(a).iter().zip(b).map(|(g, b)| g * b).sum();
            let v = (phi - 1.0 / t.gamma()).abs();
            if v > worst.0 {
                worst = (v, order);
            }
        }
    }
    worst
}

#[test]
fn tree_counts_are_right() {
    let levels = trees_up_to(8);
    let counts: Vec<usize> = levels.iter().skip(1).map(Vec::len).collect();
    assert_eq!(counts, vec![1, 1, 2, 4, 9, 20, 48, 115]);
}

#[test]
fn every_tableau_is_consistent_and_has_its_order() {
    let levels = trees_up_to(9);
    for t in ALL_TABLEAUX {
        let s = t.stages;
        assert_eq!(t.a.len(), s, "{}", t.name);
        assert_eq!(t.b.len(), s, "{}", t.name);
        assert_eq!(t.c.len(), s, "{}", t.name);
        for i in 0..s {
            assert_eq!(t.a[i].len(), i, "{} row {i}", t.name);
            let sum: f64 = t.a[i].iter().sum();
            assert!(
                (sum - t.c[i]).abs() < 1e-12,
                "{} row {i}: Σa = {sum}, c = {}",
                t.name,
                t.c[i]
            );
        }
        let a = full_a(t);
        let tol = 1e-12;
        let (v, o) = max_violation(&a, t.b, &levels, t.order as usize);
        assert!(
            v < tol,
            "{}: order condition of order {o} violated by {v:e}",
            t.name
        );
        // The order is exactly the claimed one: some condition of order p+1 fails.
        let next = &levels[t.order as usize + 1];
        let worst_next = next
            .iter()
            .map(|tr| {
                let phi: f64 = tr.g(&a).iter().zip(t.b).map(|(g, b)| g * b).sum();
                (phi - 1.0 / tr.gamma()).abs()
            })
            .fold(0.0, f64::max);
        assert!(
            worst_next > 1e-8,
            "{} seems to have order > {}",
            t.name,
            t.order
        );
        if t.fsal {
            assert_eq!(
                t.a[s - 1],
                &t.b[..s - 1],
                "{}: FSAL needs last row = b",
                t.name
            );
            assert!((t.c[s - 1] - 1.0).abs() < 1e-15);
            assert!(t.b[s - 1].abs() < 1e-15);
        }
        if let Some(e) = t.b_err {
            let sum: f64 = e.iter().sum();
            assert!(sum.abs() < 1e-12, "{}: Σ b_err = {sum:e}", t.name);
            let bhat: Vec<f64> = t.b.iter().zip(e).map(|(b, e)| b - e).collect();
            let (v, o) = max_violation(&a, &bhat, &levels, t.err_order as usize);
            assert!(
                v < tol,
                "{}: embedded order condition {o} violated by {v:e}",
                t.name
            );
        }
        if let Some(e) = t.b_err2 {
            let sum: f64 = e.iter().sum();
            assert!(sum.abs() < 1e-12, "{}: Σ b_err2 = {sum:e}", t.name);
            let bhat: Vec<f64> = t.b.iter().zip(e).map(|(b, e)| b - e).collect();
            let (v, o) = max_violation(&a, &bhat, &levels, 3);
            assert!(
                v < tol,
                "{}: 3rd-order estimate condition {o} violated by {v:e}",
                t.name
            );
        }
    }
}
