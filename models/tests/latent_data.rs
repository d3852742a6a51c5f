//! The generator of spirals whose observation rate is driven by a rarely observed
//! component ([`data::rate_spirals`], issue 16 item 4): the rate really is the stated
//! function of the hidden component, the masks say what is observed, the clean
//! trajectories are the spirals, the old state-dependent data are unchanged, and bad
//! settings are clear errors.

use models::ModelsError;
use models::latent::data::{self, SpiralConfig};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn cfg(n: usize, noise: f64) -> SpiralConfig {
    SpiralConfig {
        n_spirals: n,
        noise_std: noise,
        ..SpiralConfig::default()
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The state-dependent spirals as generated before `rate_spirals` existed (the code of
/// `state_dependent_spirals` then): times, values and rates per series.
#[allow(clippy::type_complexity)]
fn reference_state_spirals(
    c: &SpiralConfig,
    lo: f64,
    hi: f64,
    seed: u64,
) -> Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let dt = c.stop / (c.n_total - 1) as f64;
    (0..c.n_spirals)
        .map(|_| {
            let t0 = rng.random_range(0..c.n_total - 2 * c.n_sample) + c.n_sample;
            let cw = rng.random::<f64>() <= 0.5;
            let (mut times, mut values, mut lam) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..c.n_sample {
                let p = data::spiral_point(c, (t0 + i) as f64 * dt, cw);
                let l = lo + (hi - lo) / (1.0 + (-3.0 * p[1]).exp());
                lam.push(l);
                if rng.random::<f64>() < l * dt || (i + 1 == c.n_sample && times.is_empty()) {
                    times.push(i as f64 * dt);
                    values.extend(p.map(|v| v + c.noise_std * data::normal(&mut rng)));
                }
            }
            (times, values, lam)
        })
        .collect()
}

#[test]
fn keep_one_is_the_state_dependent_data_as_before() {
    let c = cfg(30, 0.3);
    let r = data::rate_spirals::<f64>(&c, 1.0, 10.0, 1.0, 5).unwrap();
    let (d, rates) = data::state_dependent_spirals::<f64>(&c, 1.0, 10.0, 5).unwrap();
    assert_eq!(r.data, d);
    assert_eq!(r.rates, rates);
    let want = reference_state_spirals(&c, 1.0, 10.0, 5);
    for (k, s) in d.series().iter().enumerate() {
        assert_eq!(
            (&s.times, &s.values, &rates[k]),
            (&want[k].0, &want[k].1, &want[k].2)
        );
        assert!(s.observed.iter().all(|&o| o));
    }
}

#[test]
fn the_rate_is_the_stated_function_of_the_hidden_component() {
    let c = cfg(200, 0.3);
    let (lo, hi) = (1.0, 10.0);
    let r = data::rate_spirals::<f64>(&c, lo, hi, 0.1, 11).unwrap();
    let n = c.n_sample;
    assert_eq!(r.grid.len(), n);
    // λ(t_i) = λ_lo + (λ_hi − λ_lo) σ(3 y_clean(t_i)), exactly.
    for (lam, cl) in r.rates.iter().zip(&r.clean) {
        assert_eq!((lam.len(), cl.len()), (n, 2 * n));
        for i in 0..n {
            let want = lo + (hi - lo) * sigmoid(3.0 * cl[2 * i + 1]);
            assert!((lam[i] - want).abs() < 1e-12);
        }
    }
    // The events are denser where the hidden y is positive: per grid point, the fraction
    // observed where y > 0.5 against where y < −0.5 (σ(±1.5) puts the expected ratio
    // above 5; 200 series give thousands of grid points on each side).
    let (mut ev, mut pts) = ([0.0f64; 2], [0.0f64; 2]);
    for (s, cl) in r.data.series().iter().zip(&r.clean) {
        for (i, &t) in r.grid.iter().enumerate() {
            let y = cl[2 * i + 1];
            let side = if y > 0.5 {
                0
            } else if y < -0.5 {
                1
            } else {
                continue;
            };
            pts[side] += 1.0;
            if s.times.contains(&t) {
                ev[side] += 1.0;
            }
        }
    }
    let (up, down) = (ev[0] / pts[0], ev[1] / pts[1]);
    let dt = r.grid[1];
    assert!(pts[0] > 2000.0 && pts[1] > 2000.0, "{pts:?}");
    assert!(
        up / down > 4.0,
        "event frequency y>0.5: {up}, y<−0.5: {down}"
    );
    // And close to λ Δt on each side (binomial sd < 0.01 here).
    assert!(up < hi * dt + 0.02 && up > (lo + (hi - lo) * sigmoid(1.5)) * dt - 0.02);
    assert!(down > lo * dt - 0.02 && down < (lo + (hi - lo) * sigmoid(-1.5)) * dt + 0.02);
}

#[test]
fn masks_times_and_clean_values() {
    let c = cfg(200, 0.0);
    let full = data::rate_spirals::<f64>(&c, 1.0, 10.0, 1.0, 3).unwrap();
    let none = data::rate_spirals::<f64>(&c, 1.0, 10.0, 0.0, 3).unwrap();
    let some = data::rate_spirals::<f64>(&c, 1.0, 10.0, 0.25, 3).unwrap();
    let (mut seen, mut total) = (0usize, 0usize);
    for k in 0..200 {
        let (f, n, s) = (
            &full.data.series()[k],
            &none.data.series()[k],
            &some.data.series()[k],
        );
        // The times and x values do not depend on hidden_keep.
        assert_eq!((&f.times, &f.values), (&n.times, &n.values));
        assert_eq!((&f.times, &f.values), (&s.times, &s.values));
        for (i, &t) in s.times.iter().enumerate() {
            // x is observed at every time, y never with keep 0.
            assert!(s.observed[2 * i] && n.observed[2 * i] && !n.observed[2 * i + 1]);
            total += 1;
            seen += usize::from(s.observed[2 * i + 1]);
            // Noise 0: the values are the clean trajectory at the grid time.
            let g = full.grid.iter().position(|&u| u == t).expect("on the grid");
            assert_eq!(f.values[2 * i], full.clean[k][2 * g]);
            assert_eq!(f.values[2 * i + 1], full.clean[k][2 * g + 1]);
        }
    }
    // y is observed at a fraction ≈ 0.25 of the times (binomial sd ≈ 0.0045 here).
    let frac = seen as f64 / total as f64;
    assert!(total > 3000 && (frac - 0.25).abs() < 0.03, "{seen}/{total}");
    // The masks reach the batches: the encoder's mask and the target have y where seen.
    let b = some.data.batch(&[0, 1, 2]).unwrap();
    let y_in_batch: usize = (0..b.n_times() * 3)
        .map(|r| (b.mask[2 * r + 1] == 1.0) as usize)
        .sum();
    let y_in_series: usize = (0..3)
        .map(|k| {
            some.data.series()[k]
                .observed
                .iter()
                .skip(1)
                .step_by(2)
                .filter(|&&o| o)
                .count()
        })
        .sum();
    assert_eq!(y_in_batch, y_in_series);
    assert_eq!(b.mask, b.target);
}

#[test]
fn noise_has_the_stated_spread() {
    let c = cfg(100, 0.5);
    let r = data::rate_spirals::<f64>(&c, 1.0, 10.0, 1.0, 9).unwrap();
    let (mut s, mut s2, mut n) = (0.0, 0.0, 0.0);
    for (ser, cl) in r.data.series().iter().zip(&r.clean) {
        for (i, &t) in ser.times.iter().enumerate() {
            let g = r.grid.iter().position(|&u| u == t).unwrap();
            for c in 0..2 {
                let e = ser.values[2 * i + c] - cl[2 * g + c];
                s += e;
                s2 += e * e;
                n += 1.0;
            }
        }
    }
    let (mean, sd) = (s / n, (s2 / n - (s / n).powi(2)).sqrt());
    assert!(mean.abs() < 0.05 && (sd - 0.5).abs() < 0.03, "{mean} {sd}");
}

#[test]
fn bad_settings_are_clear_errors() {
    let c = cfg(5, 0.3);
    for keep in [-0.1, 1.5, f64::NAN] {
        match data::rate_spirals::<f64>(&c, 1.0, 10.0, keep, 0) {
            Err(ModelsError::InvalidArgument { name, reason }) => {
                assert_eq!(name, "hidden_keep");
                assert!(reason.contains("[0, 1]"), "{reason}");
            }
            other => panic!("keep {keep}: {other:?}"),
        }
    }
    // λ_hi Δt > 1, λ_lo > λ_hi, λ_lo < 0.
    for (lo, hi) in [(1.0, 1e3), (5.0, 2.0), (-1.0, 2.0)] {
        match data::rate_spirals::<f64>(&c, lo, hi, 0.5, 0) {
            Err(ModelsError::InvalidArgument { name, .. }) => assert_eq!(name, "intensity"),
            other => panic!("({lo}, {hi}): {other:?}"),
        }
    }
    let bad = SpiralConfig { n_sample: 1, ..c };
    assert!(matches!(
        data::rate_spirals::<f64>(&bad, 1.0, 10.0, 0.5, 0),
        Err(ModelsError::InvalidArgument {
            name: "spirals",
            ..
        })
    ));
}
