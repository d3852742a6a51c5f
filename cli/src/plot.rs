//! Line plots written as PNG and SVG with no system libraries (plotters' bitmap and
//! SVG backends, the DejaVu Sans font embedded through the `dejavu` crate).

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::CliError;
use crate::output::{write_atomic, write_atomic_with};

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesKind {
    /// A polyline through the points.
    Line,
    /// A small circle at each point.
    Markers,
    /// Both a polyline and markers.
    LineMarkers,
    /// Separate segments between consecutive pairs of points (point 2k to 2k+1):
    /// arrows of a vector field.
    Segments,
}

/// One named series of (x, y) points.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// The points, in drawing order.
    pub points: Vec<(f64, f64)>,
    /// How to draw them.
    pub kind: SeriesKind,
    /// Line width in pixels.
    pub width: u32,
}

impl Series {
    /// A series drawn as a line.
    pub fn line(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            label: label.into(),
            points,
            kind: SeriesKind::Line,
            width: 2,
        }
    }

    /// A series drawn as markers.
    pub fn markers(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            label: label.into(),
            points,
            kind: SeriesKind::Markers,
            width: 2,
        }
    }

    /// A series drawn as a line with markers.
    pub fn line_markers(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            label: label.into(),
            points,
            kind: SeriesKind::LineMarkers,
            width: 2,
        }
    }

    /// Segments from each `(x, y)` to `(x + dx, y + dy)`, with a dot at the tail (the
    /// base of the arrow), for `(x, y, dx, dy)` in `arrows`.
    pub fn arrows(label: impl Into<String>, arrows: &[(f64, f64, f64, f64)]) -> Self {
        Self {
            label: label.into(),
            points: arrows
                .iter()
                .flat_map(|&(x, y, dx, dy)| [(x, y), (x + dx, y + dy)])
                .collect(),
            kind: SeriesKind::Segments,
            width: 1,
        }
    }

    /// The same series drawn `width` pixels wide (a wide pale line under a thin one
    /// shows where two series coincide).
    pub fn width(mut self, width: u32) -> Self {
        self.width = width;
        self
    }
}

/// A 2-D figure of several series with optional logarithmic axes.
#[derive(Debug, Clone, Default)]
pub struct Figure {
    /// Title drawn above the plot.
    pub title: String,
    /// Label of the horizontal axis.
    pub x_label: String,
    /// Label of the vertical axis.
    pub y_label: String,
    /// Logarithmic horizontal axis (non-positive x are dropped).
    pub log_x: bool,
    /// Logarithmic vertical axis (non-positive y are dropped).
    pub log_y: bool,
    /// Keep one unit of x as long as one unit of y (phase portraits).
    pub equal_aspect: bool,
    /// The series, drawn in order with the palette's colours.
    pub series: Vec<Series>,
    /// Where the legend goes (choose a corner the data leave empty).
    pub legend: Legend,
}

/// Corner of the plot that holds the legend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Legend {
    /// Right edge, halfway up (plotters' default).
    #[default]
    MiddleRight,
    /// Upper left corner.
    UpperLeft,
    /// Upper right corner.
    UpperRight,
    /// Lower left corner.
    LowerLeft,
    /// Lower right corner.
    LowerRight,
}

impl Legend {
    fn position(self) -> SeriesLabelPosition {
        match self {
            Legend::MiddleRight => SeriesLabelPosition::MiddleRight,
            Legend::UpperLeft => SeriesLabelPosition::UpperLeft,
            Legend::UpperRight => SeriesLabelPosition::UpperRight,
            Legend::LowerLeft => SeriesLabelPosition::LowerLeft,
            Legend::LowerRight => SeriesLabelPosition::LowerRight,
        }
    }
}

const SIZE: (u32, u32) = (900, 640);

impl Figure {
    /// A figure with a title and axis labels and no series yet.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            ..Self::default()
        }
    }

    /// Adds a series.
    pub fn with(mut self, series: Series) -> Self {
        self.series.push(series);
        self
    }

    /// Both axes logarithmic.
    pub fn log_log(mut self) -> Self {
        self.log_x = true;
        self.log_y = true;
        self
    }

    /// Writes `<dir>/<stem>.png` and `<dir>/<stem>.svg` atomically and returns their paths.
    pub fn save(&self, dir: &Path, stem: &str) -> Result<[PathBuf; 2], CliError> {
        save_panels(std::slice::from_ref(self), dir, stem)
    }

    /// The series in plotting coordinates (log10 where an axis is logarithmic), with
    /// non-finite and non-representable points dropped.
    fn transformed(&self, stem: &str) -> Result<Vec<Series>, CliError> {
        let map = |v: f64, log: bool| {
            if log {
                (v > 0.0).then(|| v.log10())
            } else {
                Some(v)
            }
        };
        let series: Vec<Series> = self
            .series
            .iter()
            .map(|s| {
                let point = |&(x, y): &(f64, f64)| {
                    Some((map(x, self.log_x)?, map(y, self.log_y)?))
                        .filter(|(x, y)| x.is_finite() && y.is_finite())
                };
                let points = if s.kind == SeriesKind::Segments {
                    // Keep a segment only when both its ends are drawable.
                    s.points
                        .chunks_exact(2)
                        .filter_map(|p| Some([point(&p[0])?, point(&p[1])?]))
                        .flatten()
                        .collect()
                } else {
                    s.points.iter().filter_map(point).collect()
                };
                Series {
                    label: s.label.clone(),
                    kind: s.kind,
                    width: s.width,
                    points,
                }
            })
            .collect();
        if series.iter().all(|s| s.points.is_empty()) {
            return Err(CliError::EmptyPlot {
                name: stem.to_string(),
            });
        }
        Ok(series)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        series: &[Series],
    ) -> Result<(), String> {
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        root.fill(&WHITE).map_err(err)?;
        let (mut x0, mut x1, mut y0, mut y1) = bounds(series);
        if self.equal_aspect {
            let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
            let half = ((x1 - x0) / 2.0).max((y1 - y0) / 2.0);
            let ratio = f64::from(SIZE.0) / f64::from(SIZE.1);
            (x0, x1, y0, y1) = (cx - half * ratio, cx + half * ratio, cy - half, cy + half);
        }
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(err)?;
        let tick = |log: bool| {
            move |v: &f64| {
                if log && (v - v.round()).abs() < 1e-9 {
                    format!("1e{}", v.round() as i64)
                } else if log {
                    format!("{:.1e}", 10f64.powf(*v))
                } else {
                    plain(*v)
                }
            }
        };
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_label_formatter(&tick(self.log_x))
            .y_label_formatter(&tick(self.log_y))
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        for (i, s) in series.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            let width = s.width;
            let style = colour.stroke_width(width);
            if matches!(s.kind, SeriesKind::Line | SeriesKind::LineMarkers) {
                chart
                    .draw_series(LineSeries::new(s.points.iter().copied(), style))
                    .map_err(err)?
                    .label(&s.label)
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(width))
                    });
            }
            if s.kind == SeriesKind::Segments {
                // Arrow heads: two strokes at ±25° back from the tip, a third of the arrow
                // long (at most 9 pixels), drawn in pixel proportions so that they look
                // alike on any axes.
                let (w, h) = chart.plotting_area().dim_in_pixel();
                let (sx, sy) = (f64::from(w) / (x1 - x0), f64::from(h) / (y1 - y0));
                let head = |a: (f64, f64), b: (f64, f64)| -> [[(f64, f64); 2]; 2] {
                    let (px, py) = ((b.0 - a.0) * sx, (b.1 - a.1) * sy);
                    let len = px.hypot(py);
                    if !len.is_finite() || len <= 0.0 {
                        return [[b, b], [b, b]];
                    }
                    let l = (len / 3.0).min(9.0) / len;
                    let (c, s) = (25f64.to_radians().cos(), 25f64.to_radians().sin());
                    let side = |s: f64| {
                        let (qx, qy) = (-(px * c - py * s) * l, -(px * s + py * c) * l);
                        [b, (b.0 + qx / sx, b.1 + qy / sy)]
                    };
                    [side(s), side(-s)]
                };
                chart
                    .draw_series(
                        s.points
                            .chunks_exact(2)
                            .map(|p| PathElement::new([p[0], p[1]], style)),
                    )
                    .map_err(err)?;
                chart
                    .draw_series(
                        s.points
                            .chunks_exact(2)
                            .flat_map(|p| head(p[0], p[1]).map(|seg| PathElement::new(seg, style))),
                    )
                    .map_err(err)?
                    .label(&s.label)
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(width))
                    });
                chart
                    .draw_series(
                        s.points
                            .chunks_exact(2)
                            .map(|p| Circle::new(p[0], 1, colour.filled())),
                    )
                    .map_err(err)?;
            }
            if matches!(s.kind, SeriesKind::Markers | SeriesKind::LineMarkers) {
                let drawn = chart
                    .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                    .map_err(err)?;
                if s.kind == SeriesKind::Markers {
                    drawn
                        .label(&s.label)
                        .legend(move |(x, y)| Circle::new((x + 10, y), 3, colour.filled()));
                }
            }
        }
        chart
            .configure_series_labels()
            .position(self.legend.position())
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        Ok(())
    }
}

/// Writes the figures one above the other (panels sharing nothing but the image) as
/// `<dir>/<stem>.png` and `<dir>/<stem>.svg`, atomically; returns their paths.
pub fn save_panels(panels: &[Figure], dir: &Path, stem: &str) -> Result<[PathBuf; 2], CliError> {
    register_font();
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    let series = panels
        .iter()
        .map(|f| f.transformed(stem))
        .collect::<Result<Vec<_>, _>>()?;
    let n = panels.len().max(1) as u32;
    let size = if n == 1 {
        SIZE
    } else {
        (SIZE.0, SIZE.1 * 3 / 5 * n)
    };
    write_atomic_with(
        &png,
        |tmp| {
            let root = BitMapBackend::new(tmp, size).into_drawing_area();
            draw_panels(&root, panels, &series)?;
            root.present().map_err(|e| e.to_string())
        },
        |reason| CliError::Plot {
            path: png.clone(),
            reason,
        },
    )?;
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        draw_panels(&root, panels, &series)
            .and_then(|()| root.present().map_err(|e| e.to_string()))
            .map_err(|reason| CliError::Plot {
                path: svg.clone(),
                reason,
            })?;
    }
    write_atomic(&svg, text.as_bytes())?;
    Ok([png, svg])
}

fn draw_panels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panels: &[Figure],
    series: &[Vec<Series>],
) -> Result<(), String> {
    let areas = root.split_evenly((panels.len().max(1), 1));
    for ((fig, s), area) in panels.iter().zip(series).zip(&areas) {
        fig.draw(area, s)?;
    }
    Ok(())
}

/// A tick label: at most three decimals, trailing zeros dropped (`2000`, `0.25`, `-1.5`).
fn plain(v: f64) -> String {
    let text = format!("{v:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

/// The bounding box of all points, padded by 5% and never empty.
fn bounds(series: &[Series]) -> (f64, f64, f64, f64) {
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in series.iter().flat_map(|s| &s.points) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    let pad = |lo: f64, hi: f64| {
        let span = if hi > lo { hi - lo } else { lo.abs().max(1.0) };
        (lo - 0.05 * span, hi + 0.05 * span)
    };
    let (x0, x1) = pad(x0, x1);
    let (y0, y1) = pad(y0, y1);
    (x0, x1, y0, y1)
}

/// Registers DejaVu Sans as plotters' "sans-serif" once per process: without a
/// registered font, text drawing fails (no system fonts are used).
pub(crate) fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded font is a valid TrueType file; a failure would surface later as
        // a plot error naming the file, never as a panic.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_png_and_svg_with_log_axes() {
        let dir = std::env::temp_dir().join(format!("cli-plot-{}", std::process::id()));
        let fig = Figure::new("test", "n", "time [s]")
            .log_log()
            .with(Series::line_markers(
                "a",
                vec![(1e2, 1e-4), (1e3, 1e-3), (1e4, 1e-2)],
            ))
            .with(Series::markers("b", vec![(1e2, 2e-4), (1e4, -1.0)]));
        let [png, svg] = fig.save(&dir, "fig").unwrap();
        let png_bytes = std::fs::read(&png).unwrap();
        assert_eq!(&png_bytes[1..4], b"PNG");
        let svg_text = std::fs::read_to_string(&svg).unwrap();
        assert!(svg_text.starts_with("<svg") && svg_text.contains("time [s]"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nothing_finite_to_draw_is_an_error() {
        let fig = Figure::new("t", "x", "y")
            .log_log()
            .with(Series::line("a", vec![(0.0, 1.0), (f64::NAN, 2.0)]));
        let err = fig.save(&std::env::temp_dir(), "never").unwrap_err();
        assert!(matches!(err, CliError::EmptyPlot { .. }));
    }
}
