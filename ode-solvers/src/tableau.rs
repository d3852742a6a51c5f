//! Butcher tableaux as `const` data.
//!
//! A tableau defines an explicit Runge–Kutta method: stages
//! `k_i = f(t + c_i h, y + h Σ_{j<i} a_ij k_j)`, solution `y_1 = y + h Σ b_i k_i`, and
//! (for adaptive methods) the local error estimate `e = h Σ b_err_i k_i`
//! (`b_err = b − b̂`, the difference with the embedded lower-order weights).
//! Coefficients are `f64`; the driver converts them once per solve to the float type.
//! They are public so that other crates (e.g. direct backpropagation through the solver)
//! can differentiate through exactly the same steps.

// Coefficients are copied digit for digit from the published sources (more digits than
// f64 holds); keeping them verbatim makes them checkable against the originals.
#![allow(clippy::excessive_precision)]

/// Default step-size controller constants attached to a tableau (Hairer's choices).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControllerDefaults {
    /// Safety factor (`safe`, 0.9).
    pub safety: f64,
    /// Smallest allowed `h_new / h` (`fac1`).
    pub min_factor: f64,
    /// Largest allowed `h_new / h` (`fac2`).
    pub max_factor: f64,
    /// PI stabilisation exponent `β` (0.04 for DOPRI5, 0 for DOP853).
    pub beta: f64,
}

/// Hairer's DOPRI5 controller defaults: `safe = 0.9, fac1 = 0.2, fac2 = 10, β = 0.04`.
pub const DOPRI5_CONTROLLER: ControllerDefaults = ControllerDefaults {
    safety: 0.9,
    min_factor: 0.2,
    max_factor: 10.0,
    beta: 0.04,
};

/// Hairer's DOP853 controller defaults: `safe = 0.9, fac1 = 0.333, fac2 = 6, β = 0`.
pub const DOP853_CONTROLLER: ControllerDefaults = ControllerDefaults {
    safety: 0.9,
    min_factor: 0.333,
    max_factor: 6.0,
    beta: 0.0,
};

/// Which continuous extension (dense output) a tableau provides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DenseKind {
    /// Cubic Hermite interpolation from `y0, y1, f0, f1` (3rd order, no extra evaluations).
    Hermite,
    /// Dormand–Prince's 4th-order interpolant (Hairer's `CONTD5`): the Hermite terms plus
    /// `r5 = h Σ d_i k_i`, evaluated as `r1 + θ(r2 + θ'(r3 + θ(r4 + θ' r5)))`, `θ' = 1 − θ`.
    Dopri5 {
        /// The weights `d_i` over the stages.
        d: &'static [f64],
    },
    /// DOP853's 7th-order interpolant (Hairer's `CONTD8`), needing three extra stages.
    Dop853(&'static Dop853Dense),
}

/// Data for DOP853's dense output. Stage indices: `0..12` are the step's stages, `12` is
/// `f(t + h, y_1)` and `13..16` the three extra stages computed here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dop853Dense {
    /// Nodes of the three extra stages.
    pub c: [f64; 3],
    /// Coefficients of the extra stages over the stages before them (13, 14, 15 entries).
    pub a: [&'static [f64]; 3],
    /// The four rows `d4..d7` (16 entries each) giving `r5..r8 = h Σ d_i k_i`.
    pub d: [&'static [f64]; 4],
}

/// An explicit Runge–Kutta method as data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tableau {
    /// Name (`"dopri5"`, …).
    pub name: &'static str,
    /// Number of stages `s`.
    pub stages: usize,
    /// Strictly lower-triangular `a`: row `i` has `i` entries (row 0 is empty).
    pub a: &'static [&'static [f64]],
    /// Weights `b` (length `s`).
    pub b: &'static [f64],
    /// Nodes `c` (length `s`).
    pub c: &'static [f64],
    /// Error weights `b − b̂` (length `s`); `None` for fixed-step-only methods.
    pub b_err: Option<&'static [f64]>,
    /// A second error estimate (DOP853's 3rd-order one), combined as in Hairer's code:
    /// `err = |h| e₅² / sqrt(e₅² + 0.01 e₃²)` in the RMS sense.
    pub b_err2: Option<&'static [f64]>,
    /// Classical order `p` of `b`.
    pub order: u32,
    /// Order of the embedded solution (the error estimate is `O(h^{err_order + 1})`).
    pub err_order: u32,
    /// The exponent `q` used by the controller: `h_new ∝ err^{-1/q}` (5 for DOPRI5, 8 for DOP853).
    pub controller_order: u32,
    /// First-same-as-last: the last row of `a` equals `b` and `c_s = 1`, so the last stage is
    /// `f(t + h, y_1)` and becomes the first stage of the next step.
    pub fsal: bool,
    /// Continuous extension.
    pub dense: DenseKind,
    /// Default controller constants.
    pub controller: ControllerDefaults,
    /// Literature reference.
    pub reference: &'static str,
}

impl Tableau {
    /// `true` when the tableau has an embedded error estimate.
    pub const fn is_adaptive(&self) -> bool {
        self.b_err.is_some()
    }
}

/// Forward Euler, order 1.
pub const EULER: Tableau = Tableau {
    name: "euler",
    stages: 1,
    a: &[&[]],
    b: &[1.0],
    c: &[0.0],
    b_err: None,
    b_err2: None,
    order: 1,
    err_order: 0,
    controller_order: 1,
    fsal: false,
    dense: DenseKind::Hermite,
    controller: DOPRI5_CONTROLLER,
    reference: "L. Euler, Institutionum calculi integralis (1768).",
};

/// Explicit midpoint rule, order 2.
pub const MIDPOINT: Tableau = Tableau {
    name: "midpoint",
    stages: 2,
    a: &[&[], &[0.5]],
    b: &[0.0, 1.0],
    c: &[0.0, 0.5],
    b_err: None,
    b_err2: None,
    order: 2,
    err_order: 0,
    controller_order: 2,
    fsal: false,
    dense: DenseKind::Hermite,
    controller: DOPRI5_CONTROLLER,
    reference: "C. Runge, Math. Ann. 46 (1895).",
};

/// Heun's method (explicit trapezoidal rule), order 2.
pub const HEUN: Tableau = Tableau {
    name: "heun",
    stages: 2,
    a: &[&[], &[1.0]],
    b: &[0.5, 0.5],
    c: &[0.0, 1.0],
    b_err: None,
    b_err2: None,
    order: 2,
    err_order: 0,
    controller_order: 2,
    fsal: false,
    dense: DenseKind::Hermite,
    controller: DOPRI5_CONTROLLER,
    reference: "K. Heun, Z. Math. Phys. 45 (1900).",
};

/// The classical fourth-order Runge–Kutta method.
pub const RK4: Tableau = Tableau {
    name: "rk4",
    stages: 4,
    a: &[&[], &[0.5], &[0.0, 0.5], &[0.0, 0.0, 1.0]],
    b: &[1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0],
    c: &[0.0, 0.5, 0.5, 1.0],
    b_err: None,
    b_err2: None,
    order: 4,
    err_order: 0,
    controller_order: 4,
    fsal: false,
    dense: DenseKind::Hermite,
    controller: DOPRI5_CONTROLLER,
    reference: "W. Kutta, Z. Math. Phys. 46 (1901).",
};

/// Bogacki–Shampine 3(2), FSAL (MATLAB's `ode23`).
pub const BOSH3: Tableau = Tableau {
    name: "bosh3",
    stages: 4,
    a: &[
        &[],
        &[0.5],
        &[0.0, 0.75],
        &[2.0 / 9.0, 1.0 / 3.0, 4.0 / 9.0],
    ],
    b: &[2.0 / 9.0, 1.0 / 3.0, 4.0 / 9.0, 0.0],
    c: &[0.0, 0.5, 0.75, 1.0],
    b_err: Some(&[
        2.0 / 9.0 - 7.0 / 24.0,
        1.0 / 3.0 - 1.0 / 4.0,
        4.0 / 9.0 - 1.0 / 3.0,
        -1.0 / 8.0,
    ]),
    b_err2: None,
    order: 3,
    err_order: 2,
    controller_order: 3,
    fsal: true,
    dense: DenseKind::Hermite,
    controller: DOPRI5_CONTROLLER,
    reference: "P. Bogacki, L. F. Shampine, Appl. Math. Lett. 2 (1989) 321-325.",
};

/// Dormand–Prince 5(4), FSAL, with its 4th-order dense output (Hairer's DOPRI5).
pub const DOPRI5: Tableau = Tableau {
    name: "dopri5",
    stages: 7,
    a: &[
        &[],
        &[1.0 / 5.0],
        &[3.0 / 40.0, 9.0 / 40.0],
        &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
        &[
            19372.0 / 6561.0,
            -25360.0 / 2187.0,
            64448.0 / 6561.0,
            -212.0 / 729.0,
        ],
        &[
            9017.0 / 3168.0,
            -355.0 / 33.0,
            46732.0 / 5247.0,
            49.0 / 176.0,
            -5103.0 / 18656.0,
        ],
        &[
            35.0 / 384.0,
            0.0,
            500.0 / 1113.0,
            125.0 / 192.0,
            -2187.0 / 6784.0,
            11.0 / 84.0,
        ],
    ],
    b: &[
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
        0.0,
    ],
    c: &[0.0, 0.2, 0.3, 0.8, 8.0 / 9.0, 1.0, 1.0],
    b_err: Some(&[
        71.0 / 57600.0,
        0.0,
        -71.0 / 16695.0,
        71.0 / 1920.0,
        -17253.0 / 339200.0,
        22.0 / 525.0,
        -1.0 / 40.0,
    ]),
    b_err2: None,
    order: 5,
    err_order: 4,
    controller_order: 5,
    fsal: true,
    dense: DenseKind::Dopri5 {
        d: &[
            -12715105075.0 / 11282082432.0,
            0.0,
            87487479700.0 / 32700410799.0,
            -10690763975.0 / 1880347072.0,
            701980252875.0 / 199316789632.0,
            -1453857185.0 / 822651844.0,
            69997945.0 / 29380423.0,
        ],
    },
    controller: DOPRI5_CONTROLLER,
    reference: "J. R. Dormand, P. J. Prince, J. Comput. Appl. Math. 6 (1980) 19-26; \
                Hairer, Norsett, Wanner, Solving ODEs I, 2nd ed. (1993), code DOPRI5.",
};

/// Dormand–Prince 5(4) with Shampine's embedded 4th-order weights
/// `b̂ = (1951/21600, 0, 22642/50085, 451/720, −12231/42400, 649/6300, 1/60)`: the same
/// stages, 5th-order solution and dense output as [`DOPRI5`], a different error estimate.
/// It is the `dopri5` of torchdiffeq (`_DORMAND_PRINCE_SHAMPINE_TABLEAU`) and diffrax
/// (`Dopri5`); on Neural ODE fields its estimate is smaller than Hairer's (about 1.5× on
/// the W2 field), so at one tolerance it takes longer steps. Use it through
/// `Method::Rk(&DOPRI5_SHAMPINE)` (the stage loop is unrolled as for [`DOPRI5`]).
pub const DOPRI5_SHAMPINE: Tableau = Tableau {
    name: "dopri5-shampine",
    b_err: Some(&[
        35.0 / 384.0 - 1951.0 / 21600.0,
        0.0,
        500.0 / 1113.0 - 22642.0 / 50085.0,
        125.0 / 192.0 - 451.0 / 720.0,
        -2187.0 / 6784.0 + 12231.0 / 42400.0,
        11.0 / 84.0 - 649.0 / 6300.0,
        -1.0 / 60.0,
    ]),
    reference: "J. R. Dormand, P. J. Prince, J. Comput. Appl. Math. 6 (1980) 19-26; \
                the embedded weights of torchdiffeq's and diffrax's dopri5 (cf. \
                L. F. Shampine, Math. Comp. 46 (1986) 135-150).",
    ..DOPRI5
};

/// Tsitouras 5(4), FSAL (coefficients as in OrdinaryDiffEq.jl / diffrax).
/// Dense output is cubic Hermite here.
pub const TSIT5: Tableau = Tableau {
    name: "tsit5",
    stages: 7,
    a: &[
        &[],
        &[0.161],
        &[-0.008480655492356989, 0.335480655492357],
        &[2.8971530571054935, -6.359448489975075, 4.3622954328695815],
        &[
            5.325864828439257,
            -11.748883564062828,
            7.4955393428898365,
            -0.09249506636175525,
        ],
        &[
            5.86145544294642,
            -12.92096931784711,
            8.159367898576159,
            -0.071584973281401,
            -0.028269050394068383,
        ],
        &[
            0.09646076681806523,
            0.01,
            0.4798896504144996,
            1.379008574103742,
            -3.290069515436081,
            2.324710524099774,
        ],
    ],
    b: &[
        0.09646076681806523,
        0.01,
        0.4798896504144996,
        1.379008574103742,
        -3.290069515436081,
        2.324710524099774,
        0.0,
    ],
    c: &[0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0],
    b_err: Some(&[
        -0.00178001105222577714,
        -0.0008164344596567469,
        0.007880878010261995,
        -0.1447110071732629,
        0.5823571654525552,
        -0.45808210592918697,
        1.0 / 66.0,
    ]),
    b_err2: None,
    order: 5,
    err_order: 4,
    controller_order: 5,
    fsal: true,
    dense: DenseKind::Hermite,
    controller: DOPRI5_CONTROLLER,
    reference: "Ch. Tsitouras, Comput. Math. Appl. 62 (2011) 770-775.",
};

const DOP853_B: [f64; 12] = [
    5.42937341165687622380535766363e-2,
    0.0,
    0.0,
    0.0,
    0.0,
    4.45031289275240888144113950566e0,
    1.89151789931450038304281599044e0,
    -5.8012039600105847814672114227e0,
    3.1116436695781989440891606237e-1,
    -1.52160949662516078556178806805e-1,
    2.01365400804030348374776537501e-1,
    4.47106157277725905176885569043e-2,
];
const DOP853_BHH1: f64 = 0.244094488188976377952755905512;
const DOP853_BHH2: f64 = 0.733846688281611857341361741547;
const DOP853_BHH3: f64 = 0.220588235294117647058823529412e-1;

/// DOP853's dense output data (Hairer's `DP86CO`).
pub const DOP853_DENSE: Dop853Dense = Dop853Dense {
    c: [0.1, 0.2, 0.777777777777777777777777777778],
    a: [
        &[
            5.61675022830479523392909219681e-2,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            2.53500210216624811088794765333e-1,
            -2.46239037470802489917441475441e-1,
            -1.24191423263816360469010140626e-1,
            1.5329179827876569731206322685e-1,
            8.20105229563468988491666602057e-3,
            7.56789766054569976138603589584e-3,
            -8.298e-3,
        ],
        &[
            3.18346481635021405060768473261e-2,
            0.0,
            0.0,
            0.0,
            0.0,
            2.83009096723667755288322961402e-2,
            5.35419883074385676223797384372e-2,
            -5.49237485713909884646569340306e-2,
            0.0,
            0.0,
            -1.08347328697249322858509316994e-4,
            3.82571090835658412954920192323e-4,
            -3.40465008687404560802977114492e-4,
            1.41312443674632500278074618366e-1,
        ],
        &[
            -4.28896301583791923408573538692e-1,
            0.0,
            0.0,
            0.0,
            0.0,
            -4.69762141536116384314449447206e0,
            7.68342119606259904184240953878e0,
            4.06898981839711007970213554331e0,
            3.56727187455281109270669543021e-1,
            0.0,
            0.0,
            0.0,
            -1.39902416515901462129418009734e-3,
            2.9475147891527723389556272149e0,
            -9.15095847217987001081870187138e0,
        ],
    ],
    d: [
        &[
            -0.84289382761090128651353491142e+01,
            0.0,
            0.0,
            0.0,
            0.0,
            0.56671495351937776962531783590e+00,
            -0.30689499459498916912797304727e+01,
            0.23846676565120698287728149680e+01,
            0.21170345824450282767155149946e+01,
            -0.87139158377797299206789907490e+00,
            0.22404374302607882758541771650e+01,
            0.63157877876946881815570249290e+00,
            -0.88990336451333310820698117400e-01,
            0.18148505520854727256656404962e+02,
            -0.91946323924783554000451984436e+01,
            -0.44360363875948939664310572000e+01,
        ],
        &[
            0.10427508642579134603413151009e+02,
            0.0,
            0.0,
            0.0,
            0.0,
            0.24228349177525818288430175319e+03,
            0.16520045171727028198505394887e+03,
            -0.37454675472269020279518312152e+03,
            -0.22113666853125306036270938578e+02,
            0.77334326684722638389603898808e+01,
            -0.30674084731089398182061213626e+02,
            -0.93321305264302278729567221706e+01,
            0.15697238121770843886131091075e+02,
            -0.31139403219565177677282850411e+02,
            -0.93529243588444783865713862664e+01,
            0.35816841486394083752465898540e+02,
        ],
        &[
            0.19985053242002433820987653617e+02,
            0.0,
            0.0,
            0.0,
            0.0,
            -0.38703730874935176555105901742e+03,
            -0.18917813819516756882830838328e+03,
            0.52780815920542364900561016686e+03,
            -0.11573902539959630126141871134e+02,
            0.68812326946963000169666922661e+01,
            -0.10006050966910838403183860980e+01,
            0.77771377980534432092869265740e+00,
            -0.27782057523535084065932004339e+01,
            -0.60196695231264120758267380846e+02,
            0.84320405506677161018159903784e+02,
            0.11992291136182789328035130030e+02,
        ],
        &[
            -0.25693933462703749003312586129e+02,
            0.0,
            0.0,
            0.0,
            0.0,
            -0.15418974869023643374053993627e+03,
            -0.23152937917604549567536039109e+03,
            0.35763911791061412378285349910e+03,
            0.93405324183624310003907691704e+02,
            -0.37458323136451633156875139351e+02,
            0.10409964950896230045147246184e+03,
            0.29840293426660503123344363579e+02,
            -0.43533456590011143754432175058e+02,
            0.96324553959188282948394950600e+02,
            -0.39177261675615439165231486172e+02,
            -0.14972683625798562581422125276e+03,
        ],
    ],
};

/// Dormand–Prince 8(5,3) (Hairer's DOP853), coefficients copied from `dop853.f`,
/// with its 7th-order dense output.
pub const DOP853: Tableau = Tableau {
    name: "dop853",
    stages: 12,
    a: &[
        &[],
        &[5.26001519587677318785587544488e-2],
        &[
            1.97250569845378994544595329183e-2,
            5.91751709536136983633785987549e-2,
        ],
        &[
            2.95875854768068491816892993775e-2,
            0.0,
            8.87627564304205475450678981324e-2,
        ],
        &[
            2.41365134159266685502369798665e-1,
            0.0,
            -8.84549479328286085344864962717e-1,
            9.24834003261792003115737966543e-1,
        ],
        &[
            3.7037037037037037037037037037e-2,
            0.0,
            0.0,
            1.70828608729473871279604482173e-1,
            1.25467687566822425016691814123e-1,
        ],
        &[
            3.7109375e-2,
            0.0,
            0.0,
            1.70252211019544039314978060272e-1,
            6.02165389804559606850219397283e-2,
            -1.7578125e-2,
        ],
        &[
            3.70920001185047927108779319836e-2,
            0.0,
            0.0,
            1.70383925712239993810214054705e-1,
            1.07262030446373284651809199168e-1,
            -1.53194377486244017527936158236e-2,
            8.27378916381402288758473766002e-3,
        ],
        &[
            6.24110958716075717114429577812e-1,
            0.0,
            0.0,
            -3.36089262944694129406857109825e0,
            -8.68219346841726006818189891453e-1,
            2.75920996994467083049415600797e1,
            2.01540675504778934086186788979e1,
            -4.34898841810699588477366255144e1,
        ],
        &[
            4.77662536438264365890433908527e-1,
            0.0,
            0.0,
            -2.48811461997166764192642586468e0,
            -5.90290826836842996371446475743e-1,
            2.12300514481811942347288949897e1,
            1.52792336328824235832596922938e1,
            -3.32882109689848629194453265587e1,
            -2.03312017085086261358222928593e-2,
        ],
        &[
            -9.3714243008598732571704021658e-1,
            0.0,
            0.0,
            5.18637242884406370830023853209e0,
            1.09143734899672957818500254654e0,
            -8.14978701074692612513997267357e0,
            -1.85200656599969598641566180701e1,
            2.27394870993505042818970056734e1,
            2.49360555267965238987089396762e0,
            -3.0467644718982195003823669022e0,
        ],
        &[
            2.27331014751653820792359768449e0,
            0.0,
            0.0,
            -1.05344954667372501984066689879e1,
            -2.00087205822486249909675718444e0,
            -1.79589318631187989172765950534e1,
            2.79488845294199600508499808837e1,
            -2.85899827713502369474065508674e0,
            -8.87285693353062954433549289258e0,
            1.23605671757943030647266201528e1,
            6.43392746015763530355970484046e-1,
        ],
    ],
    b: &DOP853_B,
    c: &[
        0.0,
        0.526001519587677318785587544488e-01,
        0.789002279381515978178381316732e-01,
        0.118350341907227396726757197510e+00,
        0.281649658092772603273242802490e+00,
        0.333333333333333333333333333333e+00,
        0.25e+00,
        0.307692307692307692307692307692e+00,
        0.651282051282051282051282051282e+00,
        0.6e+00,
        0.857142857142857142857142857142e+00,
        1.0,
    ],
    b_err: Some(&[
        0.1312004499419488073250102996e-01,
        0.0,
        0.0,
        0.0,
        0.0,
        -0.1225156446376204440720569753e+01,
        -0.4957589496572501915214079952e+00,
        0.1664377182454986536961530415e+01,
        -0.3503288487499736816886487290e+00,
        0.3341791187130174790297318841e+00,
        0.8192320648511571246570742613e-01,
        -0.2235530786388629525884427845e-01,
    ]),
    b_err2: Some(&[
        DOP853_B[0] - DOP853_BHH1,
        0.0,
        0.0,
        0.0,
        0.0,
        DOP853_B[5],
        DOP853_B[6],
        DOP853_B[7],
        DOP853_B[8] - DOP853_BHH2,
        DOP853_B[9],
        DOP853_B[10],
        DOP853_B[11] - DOP853_BHH3,
    ]),
    order: 8,
    err_order: 5,
    controller_order: 8,
    fsal: false,
    dense: DenseKind::Dop853(&DOP853_DENSE),
    controller: DOP853_CONTROLLER,
    reference: "P. J. Prince, J. R. Dormand, J. Comput. Appl. Math. 7 (1981) 67-75; \
                Hairer, Norsett, Wanner, Solving ODEs I, 2nd ed. (1993), code DOP853.",
};

/// Every built-in tableau, for tests and documentation.
pub const ALL_TABLEAUX: [&Tableau; 9] = [
    &EULER,
    &MIDPOINT,
    &HEUN,
    &RK4,
    &BOSH3,
    &DOPRI5,
    &DOPRI5_SHAMPINE,
    &TSIT5,
    &DOP853,
];
