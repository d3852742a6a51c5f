//! Plotting and file helpers shared by the examples (plotters + DejaVu Sans,
//! atomic writes: temporary file, then rename).

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

/// Boxed error for the examples' `main`.
pub type AnyError = Box<dyn std::error::Error>;

/// Registers DejaVu Sans as plotters' `sans-serif` (once, before any text).
pub fn register_font() -> Result<(), AnyError> {
    plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| "could not register the DejaVu font")?;
    Ok(())
}

/// The output directory: first non-flag argument, default `out/`; created.
pub fn out_dir() -> Result<PathBuf, AnyError> {
    let dir = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_else(|| "out".to_string());
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `true` when `--flag` is among the arguments.
pub fn has_flag(flag: &str) -> bool {
    std::env::args().any(|a| a == flag)
}

fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Keep the extension last: the PNG encoder picks the format from it.
    path.with_file_name(format!(".tmp-{}-{name}", std::process::id()))
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AnyError> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// One curve of a plot.
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Points.
    pub points: Vec<(f64, f64)>,
    /// Colour index into a fixed palette.
    pub colour: usize,
    /// Draw markers as well as the line.
    pub markers: bool,
    /// Line width in pixels (draw references wide and light, results thin).
    pub width: u32,
}

/// A line plot.
pub struct Plot {
    /// Title.
    pub title: String,
    /// Axis labels.
    pub x_label: String,
    /// Axis labels.
    pub y_label: String,
    /// Both axes logarithmic.
    pub log_log: bool,
    /// Curves.
    pub series: Vec<Series>,
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(90, 90, 90),
];

fn bounds(plot: &Plot) -> (f64, f64, f64, f64) {
    let pts = plot.series.iter().flat_map(|s| s.points.iter());
    let ok = |v: f64| v.is_finite() && (!plot.log_log || v > 0.0);
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        if ok(x) && ok(y) {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    if x0 > x1 {
        return (1.0, 10.0, 1.0, 10.0);
    }
    if plot.log_log {
        (x0 / 1.5, x1 * 1.5, y0 / 2.0, y1 * 2.0)
    } else {
        let pad = 0.05 * (y1 - y0).max(1e-12);
        (x0, x1, y0 - pad, y1 + pad)
    }
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, plot: &Plot) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let (x0, x1, y0, y1) = bounds(plot);
    macro_rules! body {
        ($chart:expr) => {{
            let mut chart = $chart;
            let log_label = |v: &f64| format!("{v:.0e}");
            let mut mesh = chart.configure_mesh();
            mesh.x_desc(plot.x_label.as_str())
                .y_desc(plot.y_label.as_str());
            if plot.log_log {
                mesh.x_label_formatter(&log_label)
                    .y_label_formatter(&log_label);
            }
            mesh.draw().map_err(err)?;
            for s in &plot.series {
                let c = PALETTE[s.colour % PALETTE.len()];
                let pts: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .copied()
                    .filter(|p| p.0.is_finite() && p.1.is_finite())
                    .filter(|p| !plot.log_log || (p.0 > 0.0 && p.1 > 0.0))
                    .collect();
                chart
                    .draw_series(LineSeries::new(pts.clone(), c.stroke_width(s.width)))
                    .map_err(err)?
                    .label(s.label.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
                if s.markers {
                    chart
                        .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
                        .map_err(err)?;
                }
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(err)?;
        }};
    }
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(plot.title.as_str(), ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70);
    if plot.log_log {
        body!(
            builder
                .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
                .map_err(err)?
        );
    } else {
        body!(builder.build_cartesian_2d(x0..x1, y0..y1).map_err(err)?);
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Writes `<dir>/<stem>.png` and `<dir>/<stem>.svg`, atomically.
pub fn save_plot(dir: &Path, stem: &str, plot: &Plot) -> Result<(), AnyError> {
    let size = (900, 600);
    let png = dir.join(format!("{stem}.png"));
    let tmp = tmp_path(&png);
    {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        draw(&root, plot)?;
    }
    std::fs::rename(&tmp, &png)?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw(&root, plot)?;
    }
    write_atomic(&dir.join(format!("{stem}.svg")), svg.as_bytes())?;
    Ok(())
}
