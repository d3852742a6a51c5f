//! Bad input returns errors that say what was wrong, never panics.

use adjoint::test_problems::{Linear, Mlp};
use adjoint::{AdjointSolver, Checkpoints, Error, GradientMode, Method, Options};

fn solver() -> AdjointSolver<f64> {
    AdjointSolver::new(Method::Dopri5, Options::default())
}

#[test]
fn input_validation() {
    let mut d = Linear::new(2);
    let a = [0.0, 1.0, -1.0, 0.0];
    let mut s = solver();
    assert!(matches!(
        s.forward(&mut d, &[1.0], &a, &[0.0, 1.0]),
        Err(Error::LengthMismatch {
            what: "z0",
            expected: 2,
            found: 1
        })
    ));
    assert!(matches!(
        s.forward(&mut d, &[1.0, 0.0], &a[..3], &[0.0, 1.0]),
        Err(Error::LengthMismatch { what: "theta", .. })
    ));
    assert!(matches!(
        s.forward(&mut d, &[f64::NAN, 0.0], &a, &[0.0, 1.0]),
        Err(Error::NonFinite {
            what: "z0",
            index: 0
        })
    ));
    assert!(matches!(
        s.forward(&mut d, &[1.0, 0.0], &a, &[]),
        Err(Error::EmptyTimes)
    ));
    assert!(matches!(
        s.forward(&mut d, &[1.0, 0.0], &a, &[0.0, 1.0, 0.5]),
        Err(Error::InvalidTimes { index: 2, .. })
    ));
    assert!(matches!(
        s.forward(&mut d, &[1.0, 0.0], &a, &[0.0, 0.0]),
        Err(Error::InvalidTimes { index: 1, .. })
    ));
    // backward before a successful forward
    assert!(matches!(
        s.backward(&mut d, &[0.0; 4]),
        Err(Error::NoForwardPass)
    ));
    s.forward(&mut d, &[1.0, 0.0], &a, &[0.0, 1.0]).unwrap();
    assert!(matches!(
        s.backward(&mut d, &[0.0; 3]),
        Err(Error::LengthMismatch {
            what: "dl_dz",
            expected: 4,
            found: 3
        })
    ));
    assert!(matches!(
        s.backward(&mut d, &[0.0, 0.0, f64::INFINITY, 0.0]),
        Err(Error::NonFinite {
            what: "dl_dz",
            index: 2
        })
    ));
    // a dynamics of another size
    let mut other = Linear::new(3);
    assert!(matches!(
        s.backward(&mut other, &[0.0; 4]),
        Err(Error::LengthMismatch { .. })
    ));
}

#[test]
fn unsupported_and_invalid_options() {
    let mut d = Linear::new(1);
    let mut s =
        AdjointSolver::new(Method::Adams, Options::default()).with_mode(GradientMode::Direct);
    let e = s.forward(&mut d, &[1.0], &[-1.0], &[0.0, 1.0]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::UnsupportedMethod {
                method: "adams",
                ..
            }
        ),
        "{e}"
    );
    let mut s = solver().with_mode(GradientMode::Checkpointed {
        checkpoints: Checkpoints::Budget(0),
        backward: Default::default(),
    });
    assert!(matches!(
        s.forward(&mut d, &[1.0], &[-1.0], &[0.0, 1.0]),
        Err(Error::InvalidOption {
            name: "Checkpoints::Budget",
            ..
        })
    ));
    // Solver errors come through unchanged.
    let mut s = AdjointSolver::new(Method::Dopri5, Options::with_tol(-1.0, 1e-9));
    let e = s.forward(&mut d, &[1.0], &[-1.0], &[0.0, 1.0]).unwrap_err();
    assert!(matches!(e, Error::Solve(_)), "{e}");
    assert!(e.to_string().contains("rtol"), "{e}");
}

#[test]
fn blow_up_is_an_error_not_a_panic() {
    // ż = z² from z0 = 1 blows up at t = 1.
    let mut d = adjoint::FnDynamics::new(1, 0, |_t: f64, z: &[f64], _: &[f64], o: &mut [f64]| {
        o[0] = z[0] * z[0];
    })
    .with_vjp(|_t, z, _th, a, gz, _gth| {
        gz[0] = 2.0 * z[0] * a[0];
        0.0
    });
    for mode in [
        GradientMode::checkpointed(),
        GradientMode::Direct,
        GradientMode::Forward,
    ] {
        let mut s = solver().with_mode(mode);
        assert!(s.forward(&mut d, &[1.0], &[], &[0.0, 2.0]).is_err());
    }
}

#[test]
fn single_output_time_gives_identity_gradient() {
    let mut mlp = Mlp::<f64>::new(&[2, 3, 2], 1, false).unwrap();
    let theta = mlp.init_params(0, 1.0);
    for mode in [
        GradientMode::checkpointed(),
        GradientMode::backsolve(false),
        GradientMode::Direct,
        GradientMode::Forward,
    ] {
        let mut s = solver().with_mode(mode);
        s.forward(&mut mlp, &[0.1, 0.2], &theta, &[0.5]).unwrap();
        let g = s.backward(&mut mlp, &[3.0, 4.0]).unwrap();
        assert_eq!(g.z0, vec![3.0, 4.0]);
        assert!(g.theta.iter().all(|x| *x == 0.0));
        assert_eq!(g.ts, vec![0.0]);
    }
}
