//! Trajectories: sampled states `y(t_k)` read from and written to CSV.
//!
//! The CSV format is one header line (column names) followed by one row per sample:
//! the first column is the time, the others the state components. Times must be
//! finite and strictly increasing (irregular spacing is fine); every row has the
//! header's number of fields. Blank lines and lines starting with `#` are skipped.
//! Lines may end in LF, CRLF or CR alone; a trailing comma (an empty last field) on any
//! line is ignored; a UTF-8 byte-order mark is skipped. A file that is not UTF-8 is
//! reported with the line, field and byte offset of the first invalid byte.

use std::fmt::Write as _;
use std::path::Path;

use atomic_write::AtomicWriteError;

use crate::error::ModelsError;

/// A sampled trajectory: `ts[k]` and the state `ys[k*dim .. (k+1)*dim]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    /// Names of the state components (the CSV header without the time column).
    pub names: Vec<String>,
    /// Sample times, strictly increasing.
    pub ts: Vec<f64>,
    /// States, row-major, `ts.len() * dim` values.
    pub ys: Vec<f64>,
}

impl Trajectory {
    /// A trajectory from its parts, checking lengths, finiteness and monotone times.
    pub fn new(names: Vec<String>, ts: Vec<f64>, ys: Vec<f64>) -> Result<Self, ModelsError> {
        let invalid = |reason: String| ModelsError::InvalidArgument {
            name: "trajectory",
            reason,
        };
        if names.is_empty() {
            return Err(invalid(
                "a trajectory needs at least one state column".into(),
            ));
        }
        if ts.len() < 2 {
            return Err(invalid(format!(
                "a trajectory needs at least two samples, found {}",
                ts.len()
            )));
        }
        if ys.len() != ts.len() * names.len() {
            return Err(invalid(format!(
                "{} samples of dimension {} need {} values, found {}",
                ts.len(),
                names.len(),
                ts.len() * names.len(),
                ys.len()
            )));
        }
        if let Some(k) = ts
            .windows(2)
            .position(|w| w[1].partial_cmp(&w[0]) != Some(std::cmp::Ordering::Greater))
        {
            return Err(invalid(format!(
                "times must increase strictly: t[{}] = {} is followed by {}",
                k,
                ts[k],
                ts[k + 1]
            )));
        }
        if let Some(i) = ts.iter().chain(&ys).position(|v| !v.is_finite()) {
            return Err(invalid(format!("non-finite value at position {i}")));
        }
        Ok(Self { names, ts, ys })
    }

    /// State dimension.
    pub fn dim(&self) -> usize {
        self.names.len()
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// Whether there is no sample (never true for a validated trajectory).
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// The state at sample `k`.
    pub fn y(&self, k: usize) -> &[f64] {
        &self.ys[k * self.dim()..(k + 1) * self.dim()]
    }

    /// Parses CSV text; `path` only names the source in errors.
    pub fn parse_csv(text: &str, path: &Path) -> Result<Self, ModelsError> {
        let err = |line: usize, column: usize, reason: String| ModelsError::Data {
            path: path.to_path_buf(),
            line,
            column,
            reason,
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = split_lines(text)
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        let (header_line, header) = lines
            .next()
            .ok_or_else(|| err(1, 1, "the file is empty (expected a header line)".into()))?;
        let columns = fields(header);
        if columns.len() < 2 {
            return Err(err(
                header_line,
                1,
                format!(
                    "the header has {} column(s); expected a time column and at least one state column",
                    columns.len()
                ),
            ));
        }
        if let Some(c) = columns.iter().position(|c| c.parse::<f64>().is_ok()) {
            return Err(err(
                header_line,
                c + 1,
                format!(
                    "the first line must be a header of column names, found the number {:?}",
                    columns[c]
                ),
            ));
        }
        let names: Vec<String> = columns[1..].iter().map(|c| c.to_string()).collect();
        let (mut ts, mut ys) = (Vec::new(), Vec::new());
        let mut last: Option<(usize, f64)> = None;
        for (line, row) in lines {
            let fields = fields(row);
            if fields.len() != columns.len() {
                return Err(err(
                    line,
                    fields.len().min(columns.len()) + 1,
                    format!(
                        "expected {} fields like the header, found {}",
                        columns.len(),
                        fields.len()
                    ),
                ));
            }
            for (c, field) in fields.iter().enumerate() {
                let v: f64 = field
                    .parse()
                    .map_err(|_| err(line, c + 1, format!("{field:?} is not a number")))?;
                if !v.is_finite() {
                    return Err(err(line, c + 1, format!("{field:?} is not finite")));
                }
                if c == 0 {
                    if let Some((prev_line, prev)) = last
                        && v.partial_cmp(&prev) != Some(std::cmp::Ordering::Greater)
                    {
                        return Err(err(
                            line,
                            1,
                            format!(
                                "times must increase strictly: {v} follows {prev} (line {prev_line})"
                            ),
                        ));
                    }
                    last = Some((line, v));
                    ts.push(v);
                } else {
                    ys.push(v);
                }
            }
        }
        if ts.len() < 2 {
            return Err(err(
                header_line,
                1,
                format!("need at least two data rows, found {}", ts.len()),
            ));
        }
        Self::new(names, ts, ys)
    }

    /// Reads a CSV file (see the module docs for the format).
    pub fn read_csv(path: &Path) -> Result<Self, ModelsError> {
        let bytes = std::fs::read(path).map_err(|source| ModelsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse_csv_bytes(&bytes, path)
    }

    /// Parses the bytes of a CSV file; a file that is not UTF-8 is a
    /// [`ModelsError::Data`] naming the line and field of the first invalid byte and its
    /// byte offset. `path` only names the source in errors.
    pub fn parse_csv_bytes(bytes: &[u8], path: &Path) -> Result<Self, ModelsError> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Self::parse_csv(text, path),
            Err(e) => {
                let at = e.valid_up_to();
                let before = &bytes[..at];
                let line_start = before
                    .iter()
                    .rposition(|&b| b == b'\n' || b == b'\r')
                    .map_or(0, |i| i + 1);
                let line = 1 + before
                    .iter()
                    .enumerate()
                    .filter(|&(i, &b)| {
                        b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
                    })
                    .count();
                let column = 1 + before[line_start..].iter().filter(|&&b| b == b',').count();
                Err(ModelsError::Data {
                    path: path.to_path_buf(),
                    line,
                    column,
                    reason: format!(
                        "byte {at} (0x{:02x}) is not valid UTF-8: save the file as UTF-8 or plain ASCII text",
                        bytes[at]
                    ),
                })
            }
        }
    }

    /// The CSV text, values printed with round-trip precision.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("t");
        for n in &self.names {
            out.push(',');
            out.push_str(n);
        }
        out.push('\n');
        for k in 0..self.len() {
            let _ = write!(out, "{:?}", self.ts[k]);
            for v in self.y(k) {
                let _ = write!(out, ",{v:?}");
            }
            out.push('\n');
        }
        out
    }

    /// Mean absolute difference from `other` over every time and component (same times and
    /// dimension required).
    pub fn mean_abs_error(&self, other: &Trajectory) -> Result<f64, ModelsError> {
        if self.ts != other.ts || self.dim() != other.dim() {
            return Err(ModelsError::InvalidArgument {
                name: "trajectory",
                reason: format!(
                    "cannot compare {} samples of dimension {} with {} of dimension {} at other times",
                    self.len(),
                    self.dim(),
                    other.len(),
                    other.dim()
                ),
            });
        }
        let sum: f64 = self
            .ys
            .iter()
            .zip(&other.ys)
            .map(|(a, b)| (a - b).abs())
            .sum();
        Ok(sum / self.ys.len().max(1) as f64)
    }

    /// Writes the CSV file atomically ([`atomic_write::write_atomic`]: a synced temporary
    /// sibling renamed over `path`), creating its directory if needed.
    pub fn write_csv(&self, path: &Path) -> Result<(), ModelsError> {
        let io = |path: &Path, source| ModelsError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io(path, e))?;
        }
        atomic_write::write_atomic(path, self.to_csv().as_bytes()).map_err(|e| match e {
            AtomicWriteError::Write(source) => io(path, source),
            AtomicWriteError::Io { path, source, .. } => io(&path, source),
        })
    }

    /// Component `i` against time, as plot points.
    pub fn component(&self, i: usize) -> Vec<(f64, f64)> {
        (0..self.len())
            .map(|k| (self.ts[k], self.y(k)[i]))
            .collect()
    }

    /// Component `j` against component `i` (a phase portrait), as plot points.
    pub fn phase(&self, i: usize, j: usize) -> Vec<(f64, f64)> {
        (0..self.len())
            .map(|k| (self.y(k)[i], self.y(k)[j]))
            .collect()
    }
}

/// The lines of `text`, ended by LF, CRLF or a lone CR (old Mac files).
fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let t = rest?;
        match t.find(['\n', '\r']) {
            None => {
                rest = None;
                (!t.is_empty()).then_some(t)
            }
            Some(i) => {
                let skip = if t[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&t[i + skip..]);
                Some(&t[..i])
            }
        }
    })
}

/// The trimmed comma-separated fields of a line, without one empty trailing field (a
/// trailing comma, as some spreadsheets write).
fn fields(line: &str) -> Vec<&str> {
    let mut f: Vec<&str> = line.split(',').map(str::trim).collect();
    if f.len() > 1 && f.last().is_some_and(|l| l.is_empty()) {
        f.pop();
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_commas_cr_endings_and_bom_are_read() {
        let want = parse("t,x\n0,1\n1,2\n").unwrap();
        assert_eq!(parse("t,x,\n0,1,\n1,2,\n").unwrap(), want);
        assert_eq!(parse("t,x\r0,1\r1,2\r").unwrap(), want);
        assert_eq!(parse("t,x\r\n0,1\r\n1,2").unwrap(), want);
        assert_eq!(parse("\u{feff}t,x\n0,1\n1,2\n").unwrap(), want);
        // Line numbers count CR-only lines.
        assert_eq!(position(parse("t,x\r0,1\r1,z\r").unwrap_err()), (3, 2));
    }

    #[test]
    fn invalid_utf8_is_named_with_line_field_and_byte() {
        let e = Trajectory::parse_csv_bytes(b"t,x\n0,1\n1,\xff2\n", Path::new("d.csv"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("d.csv:3:2: byte 10 (0xff) is not valid UTF-8"),
            "{e}"
        );
    }

    fn parse(text: &str) -> Result<Trajectory, ModelsError> {
        Trajectory::parse_csv(text, Path::new("data.csv"))
    }

    fn position(e: ModelsError) -> (usize, usize) {
        match e {
            ModelsError::Data { line, column, .. } => (line, column),
            other => panic!("expected a data error, got {other}"),
        }
    }

    #[test]
    fn round_trip_is_exact() {
        let t = Trajectory::new(
            vec!["x".into(), "y".into()],
            vec![0.0, 0.1, 0.35],
            vec![1.0, 2.0, 0.1 + 0.2, -1e-300, 3.5, 1.0 / 3.0],
        )
        .unwrap();
        assert_eq!(parse(&t.to_csv()).unwrap(), t);
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let t = parse("# made by hand\nt,y\n\n0,1\n# mid\n0.5,2\n").unwrap();
        assert_eq!(t.ts, vec![0.0, 0.5]);
        assert_eq!(t.ys, vec![1.0, 2.0]);
    }

    #[test]
    fn errors_name_line_and_column() {
        assert_eq!(position(parse("t,y\n0,1\n1,abc\n").unwrap_err()), (3, 2));
        assert_eq!(position(parse("t,y,z\n0,1,2\n1,2\n").unwrap_err()), (3, 3));
        assert_eq!(position(parse("t,y\n0,1\n0,2\n").unwrap_err()), (3, 1));
        assert_eq!(position(parse("t,y\n0,1\n1,inf\n").unwrap_err()), (3, 2));
        assert_eq!(position(parse("0,1\n1,2\n").unwrap_err()), (1, 1));
        assert_eq!(position(parse("t\n0\n1\n").unwrap_err()), (1, 1));
        assert_eq!(position(parse("t,y\n0,1\n").unwrap_err()), (1, 1));
        assert_eq!(position(parse("").unwrap_err()), (1, 1));
    }
}
