//! `TanhMlp`'s fused row-chunk path (f64, AVX-512 or AVX2 + FMA) against its reference
//! path (a layer at a time through faer): agreement to round-off, independence of the
//! chunk size bit for bit, central differences of the VJP, and length errors. Where the
//! CPU has neither instruction set both sides run the reference path and the comparisons
//! hold trivially (`fused_path_where_the_cpu_has_it` says which ran).

use adjoint::test_problems::SplitMix64;
use adjoint::{Dynamics, Error, TanhMlp, Vjp};

#[global_allocator]
static GLOBAL: alloc_count::Counting = alloc_count::Counting;

/// Fused against reference, relative to the largest reference magnitude (and 1); the
/// largest seen is 3.4e-15 (the θ-gradient at B = 4096, a sum over the rows).
const AGREE: f64 = 1e-13;

fn draw(rng: &mut SplitMix64, n: usize, scale: f64) -> Vec<f64> {
    (0..n).map(|_| scale * rng.uniform_pm1()).collect()
}

/// `max |x − y| / max(1, max |y|)`.
fn rel(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len());
    let m = y.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    x.iter()
        .zip(y)
        .fold(0.0f64, |e, (a, b)| e.max((a - b).abs()))
        / m
}

/// Bit patterns, for exact comparisons (NaN-safe).
fn bits(x: &[f64]) -> Vec<u64> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// One call of each: eval's output, vjp's `(∂z, ∂θ, ∂t)`.
struct Calls {
    f: Vec<f64>,
    gz: Vec<f64>,
    gth: Vec<f64>,
    gt: f64,
}

fn calls(m: &mut TanhMlp<f64>, t: f64, z: &[f64], th: &[f64], a: &[f64]) -> Calls {
    let mut f = vec![0.0; z.len()];
    let (mut gz, mut gth) = (vec![f64::NAN; z.len()], vec![f64::NAN; th.len()]);
    m.eval(t, z, th, &mut f).expect("eval");
    let gt = m.vjp(t, z, th, a, &mut gz, &mut gth).expect("vjp");
    Calls { f, gz, gth, gt }
}

/// Fused (several chunk sizes, bit-identical among themselves) against reference.
fn check(widths: &[usize], batch: usize, time_input: bool, seed: u64) {
    let d = widths[0];
    let fused = TanhMlp::<f64>::new(widths, batch, time_input).expect("mlp");
    let th = fused.init_params(seed, 1.5);
    let mut rng = SplitMix64::new(seed + 100);
    let z = draw(&mut rng, batch * d, 1.0);
    let a = draw(&mut rng, batch * d, 1.0);
    let t = 0.37;
    let mut reference = fused.clone().with_reference_kernels();
    assert_eq!(reference.chunk_rows(), None);
    let r = calls(&mut reference, t, &z, &th, &a);
    let mut first: Option<Calls> = None;
    for chunk in [1, 3, 8, 64, 100, batch] {
        let mut m = fused.clone().with_chunk_rows(chunk).expect("chunk");
        if let Some(c) = m.chunk_rows() {
            assert_eq!(c, chunk.min(batch));
        }
        // Twice: the cached transposes must not change anything.
        for _ in 0..2 {
            let c = calls(&mut m, t, &z, &th, &a);
            let what = format!("{widths:?} B = {batch} time {time_input} chunk {chunk}");
            assert!(rel(&c.f, &r.f) < AGREE, "eval {what}: {}", rel(&c.f, &r.f));
            assert!(
                rel(&c.gz, &r.gz) < AGREE,
                "vjp z {what}: {}",
                rel(&c.gz, &r.gz)
            );
            let e = rel(&c.gth, &r.gth);
            assert!(e < AGREE, "vjp θ {what}: {e}");
            assert!(
                (c.gt - r.gt).abs() <= AGREE * r.gt.abs().max(1.0),
                "vjp t {what}"
            );
            if let Some(f) = &first {
                assert_eq!(bits(&c.f), bits(&f.f), "eval by chunk {what}");
                assert_eq!(bits(&c.gz), bits(&f.gz), "vjp z by chunk {what}");
                assert_eq!(bits(&c.gth), bits(&f.gth), "vjp θ by chunk {what}");
                assert_eq!(c.gt.to_bits(), f.gt.to_bits(), "vjp t by chunk {what}");
            } else {
                first = Some(c);
            }
        }
    }
}

/// The fused path runs on every x86-64 CPU with AVX2 + FMA (AVX-512 where present), so
/// the comparisons above are not between two copies of the reference path.
#[test]
fn fused_path_where_the_cpu_has_it() {
    let m = TanhMlp::<f64>::new(&[2, 64, 64, 2], 16, false).expect("mlp");
    #[cfg(target_arch = "x86_64")]
    {
        use autodiff::vmath::{has_avx2_fma, has_avx512};
        let want = if has_avx512() {
            "avx512"
        } else if has_avx2_fma() {
            "avx2"
        } else {
            "reference"
        };
        assert_eq!(m.kernels(), want);
        eprintln!("TanhMlp<f64> kernels: {}", m.kernels());
    }
    assert_eq!(m.clone().with_reference_kernels().kernels(), "reference");
    let m32 = TanhMlp::<f32>::new(&[2, 64, 64, 2], 16, false).expect("mlp");
    assert_eq!(m32.kernels(), "reference");
}

#[test]
fn w2_shape_every_batch_size() {
    for batch in [1, 3, 16, 17, 100, 4096] {
        check(&[2, 64, 64, 2], batch, false, batch as u64);
    }
}

#[test]
fn odd_widths_and_depths() {
    for (widths, batch) in [
        (&[2, 13, 2][..], 17),
        (&[3, 9, 17, 5, 3][..], 33),
        (&[2, 8, 2][..], 5),
        (&[1, 1][..], 4),
        (&[4, 4][..], 9),
        (&[5, 40, 33, 5][..], 70),
        (&[2, 70, 2][..], 3),
        // A narrow first layer (its ∂W accumulated transposed) and 3- / 4-wide dot
        // products at the ends.
        (&[20, 4, 20][..], 9),
        (&[3, 40, 3][..], 11),
        (&[4, 24, 17, 4][..], 6),
    ] {
        check(widths, batch, false, 7);
        check(widths, batch, true, 8);
    }
}

#[test]
fn time_input_w2() {
    check(&[2, 64, 64, 2], 100, true, 3);
}

/// `aᵀ ∂f/∂(z, θ, t) · v` against central differences of `aᵀ f` along random `v`.
#[test]
fn vjp_matches_central_differences() {
    for (widths, batch, time_input) in [
        (&[2, 64, 64, 2][..], 16, true),
        (&[2, 64, 64, 2][..], 67, false),
        (&[3, 9, 17, 5, 3][..], 10, true),
    ] {
        let mut m = TanhMlp::<f64>::new(widths, batch, time_input).expect("mlp");
        let n = m.n_states();
        let th = m.init_params(11, 1.0);
        let mut rng = SplitMix64::new(12);
        let z = draw(&mut rng, n, 1.0);
        let a = draw(&mut rng, n, 1.0);
        let (vz, vth, vt) = (draw(&mut rng, n, 1.0), draw(&mut rng, th.len(), 1.0), 0.7);
        let t = 0.4;
        let (mut gz, mut gth) = (vec![0.0; n], vec![0.0; th.len()]);
        let gt = m.vjp(t, &z, &th, &a, &mut gz, &mut gth).expect("vjp");
        let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>();
        let mut phi = |s: f64| {
            let zs: Vec<f64> = z.iter().zip(&vz).map(|(p, q)| p + s * q).collect();
            let ths: Vec<f64> = th.iter().zip(&vth).map(|(p, q)| p + s * q).collect();
            let ts = if time_input { t + s * vt } else { t };
            let mut f = vec![0.0; n];
            m.eval(ts, &zs, &ths, &mut f).expect("eval");
            dot(&a, &f)
        };
        let h = f64::EPSILON.cbrt();
        let fd = (phi(h) - phi(-h)) / (2.0 * h);
        let exact = dot(&gz, &vz) + dot(&gth, &vth) + if time_input { gt * vt } else { 0.0 };
        let err = (fd - exact).abs() / exact.abs().max(1.0);
        assert!(
            err < 1e-8,
            "{widths:?} B = {batch}: fd {fd} vjp {exact} ({err:e})"
        );
    }
}

/// The fused path's VJP pieces (`vjp_z`, `vjp_theta`, `vjp_t`) are the full VJP's.
#[test]
fn vjp_parts_match_vjp() {
    let mut m = TanhMlp::<f64>::new(&[2, 64, 64, 2], 17, true).expect("mlp");
    let th = m.init_params(5, 1.0);
    let mut rng = SplitMix64::new(6);
    let (z, a) = (draw(&mut rng, 34, 1.0), draw(&mut rng, 34, 1.0));
    let (mut gz, mut gth) = (vec![0.0; 34], vec![0.0; th.len()]);
    let gt = m.vjp(0.2, &z, &th, &a, &mut gz, &mut gth).expect("vjp");
    let (mut gz2, mut gth2) = (vec![0.0; 34], vec![0.0; th.len()]);
    m.vjp_z(0.2, &z, &th, &a, &mut gz2).expect("vjp_z");
    m.vjp_theta(0.2, &z, &th, &a, &mut gth2).expect("vjp_theta");
    let gt2 = m.vjp_t(0.2, &z, &th, &a).expect("vjp_t");
    assert_eq!(bits(&gz), bits(&gz2));
    assert_eq!(bits(&gth), bits(&gth2));
    assert_eq!(gt.to_bits(), gt2.to_bits());
}

/// A changed `θ` at the same length is seen (the fused path caches `W_lᵀ`).
#[test]
fn new_theta_is_used() {
    let mut m = TanhMlp::<f64>::new(&[2, 16, 16, 2], 8, false).expect("mlp");
    let mut r = m.clone().with_reference_kernels();
    let mut rng = SplitMix64::new(9);
    let (z, a) = (draw(&mut rng, 16, 1.0), draw(&mut rng, 16, 1.0));
    for seed in [1, 2, 3] {
        let th = m.init_params(seed, 1.0);
        let c = calls(&mut m, 0.0, &z, &th, &a);
        let e = calls(&mut r, 0.0, &z, &th, &a);
        assert!(
            rel(&c.gz, &e.gz) < AGREE && rel(&c.gth, &e.gth) < AGREE,
            "seed {seed}"
        );
    }
    // One value changed at a time, in place: in `W₀` (first, last), `W₁`, `b₁`, the
    // output layer's `W₂` (not read by the VJP's forward) and `b₂`. Layout for
    // [2, 16, 16, 2]: W₀ 0..32, b₀ 32..48, W₁ 48..304, b₁ 304..320, W₂ 320..352, b₂ ..354.
    let mut th = m.init_params(4, 1.0);
    calls(&mut m, 0.0, &z, &th, &a);
    for i in [0, 31, 48, 200, 303, 310, 320, 351, 353] {
        th[i] += 0.25;
        let c = calls(&mut m, 0.0, &z, &th, &a);
        let e = calls(&mut r, 0.0, &z, &th, &a);
        assert!(
            rel(&c.gz, &e.gz) < AGREE && rel(&c.gth, &e.gth) < AGREE,
            "θ[{i}] changed"
        );
    }
}

#[test]
fn wrong_lengths_are_errors() {
    let mut m = TanhMlp::<f64>::new(&[2, 8, 2], 4, false).expect("mlp");
    let th = m.init_params(1, 1.0);
    let (z, mut out) = (vec![0.0; 8], vec![0.0; 8]);
    let err = m.eval(0.0, &z[..7], &th, &mut out).unwrap_err();
    assert!(matches!(
        err,
        Error::LengthMismatch {
            expected: 8,
            found: 7,
            ..
        }
    ));
    let err = m.eval(0.0, &z, &th[1..], &mut out).unwrap_err();
    assert!(matches!(err, Error::LengthMismatch { .. }));
    let mut g = vec![0.0; th.len()];
    let err = m.vjp(0.0, &z, &th, &z[..6], &mut out, &mut g).unwrap_err();
    assert!(matches!(
        err,
        Error::LengthMismatch {
            expected: 8,
            found: 6,
            ..
        }
    ));
    assert!(
        TanhMlp::<f64>::new(&[2, 8, 2], 4, false)
            .unwrap()
            .with_chunk_rows(0)
            .is_err()
    );
}

/// `f32` runs the reference path; it agrees with the `f64` fused path to f32 round-off.
#[test]
fn f32_agrees_with_f64() {
    let m64 = TanhMlp::<f64>::new(&[2, 64, 64, 2], 16, true).expect("mlp");
    let mut m32 = TanhMlp::<f32>::new(&[2, 64, 64, 2], 16, true).expect("mlp");
    assert_eq!(m32.chunk_rows(), None);
    let th = m64.init_params(4, 1.0);
    let mut rng = SplitMix64::new(4);
    let (z, a) = (draw(&mut rng, 32, 1.0), draw(&mut rng, 32, 1.0));
    let c = calls(&mut m64.clone(), 0.3, &z, &th, &a);
    let to32 = |x: &[f64]| x.iter().map(|v| *v as f32).collect::<Vec<f32>>();
    let (z32, th32, a32) = (to32(&z), to32(&th), to32(&a));
    let mut f = vec![0.0f32; 32];
    m32.eval(0.3, &z32, &th32, &mut f).expect("eval");
    let (mut gz, mut gth) = (vec![0.0f32; 32], vec![0.0f32; th.len()]);
    m32.vjp(0.3, &z32, &th32, &a32, &mut gz, &mut gth)
        .expect("vjp");
    let up = |x: &[f32]| x.iter().map(|v| *v as f64).collect::<Vec<f64>>();
    assert!(rel(&up(&f), &c.f) < 1e-5);
    assert!(rel(&up(&gz), &c.gz) < 1e-5);
    assert!(rel(&up(&gth), &c.gth) < 1e-5);
}

/// No allocation in `eval` or `vjp`, from the first call on (buffers sized in `new`),
/// also when θ changes (the cached transposes are redone in place).
#[test]
fn calls_do_not_allocate() {
    for (batch, chunk) in [(16, 64), (300, 64), (5, 2)] {
        let mut m = TanhMlp::<f64>::new(&[2, 64, 64, 2], batch, true)
            .and_then(|m| m.with_chunk_rows(chunk))
            .expect("mlp");
        let th = m.init_params(1, 1.0);
        let th2 = m.init_params(2, 1.0);
        let mut rng = SplitMix64::new(3);
        let (z, a) = (
            draw(&mut rng, 2 * batch, 1.0),
            draw(&mut rng, 2 * batch, 1.0),
        );
        let (mut f, mut gz, mut gth) = (
            vec![0.0; 2 * batch],
            vec![0.0; 2 * batch],
            vec![0.0; th.len()],
        );
        let ((), n) = alloc_count::allocations_in(|| {
            for theta in [&th, &th, &th2] {
                m.eval(0.1, &z, theta, &mut f).expect("eval");
                m.vjp(0.1, &z, theta, &a, &mut gz, &mut gth).expect("vjp");
                m.vjp_z(0.1, &z, theta, &a, &mut gz).expect("vjp_z");
            }
        });
        assert_eq!(n, 0, "B = {batch}, chunk {chunk}");
    }
}
