//! Plot: a recorded time series written as CSV (the data) and SVG (a chart of it), for
//! docs/benchmarks.md. Behind the `plot` feature (plotters, SVG backend only: no fonts, no
//! system libraries).

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use plotters::prelude::*;

/// One line of a chart: `(x, y)` points, in x order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its legend entry.
    pub name: String,
    /// Points; `None` values leave a gap.
    pub points: Vec<(f64, Option<f64>)>,
    /// Draw as a step function (a value holds until the next point), e.g. a link capacity.
    pub step: bool,
}

impl Series {
    /// A line.
    pub fn line(name: impl Into<String>, points: Vec<(f64, Option<f64>)>) -> Self {
        Series {
            name: name.into(),
            points,
            step: false,
        }
    }

    /// A step function.
    pub fn step(name: impl Into<String>, points: Vec<(f64, Option<f64>)>) -> Self {
        Series {
            name: name.into(),
            points,
            step: true,
        }
    }

    /// The runs of consecutive points with values, as drawable polylines.
    fn segments(&self) -> Vec<Vec<(f64, f64)>> {
        let mut out = Vec::new();
        let mut cur: Vec<(f64, f64)> = Vec::new();
        for (i, &(x, y)) in self.points.iter().enumerate() {
            match y {
                Some(y) => {
                    if self.step
                        && let Some(&(_, prev_y)) = cur.last()
                    {
                        cur.push((x, prev_y));
                    }
                    cur.push((x, y));
                    if self.step && i + 1 == self.points.len() {
                        cur.push((x, y));
                    }
                }
                None => {
                    if !cur.is_empty() {
                        out.push(std::mem::take(&mut cur));
                    }
                }
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }
}

/// One panel of a chart: a y axis and its series.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Y axis label.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Fixed y range; `None` = from 0 (or the smallest value, on a log axis) to 110 % of
    /// the largest value.
    pub y_range: Option<(f64, f64)>,
    /// A logarithmic y axis (values at or below 0 are left out), for rates that span
    /// decades, e.g. 60 kbit/s and 3 Mbit/s on one chart.
    pub log_y: bool,
}

/// A chart: panels stacked over a shared x axis (seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Title over the first panel.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// The panels, top to bottom.
    pub panels: Vec<Panel>,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x7f, 0x7f, 0x7f),
];

fn to_io(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl Chart {
    /// Writes the chart as an SVG file (900 px wide, 260 px per panel).
    ///
    /// # Errors
    ///
    /// The file cannot be written.
    pub fn write_svg(&self, path: &Path) -> io::Result<()> {
        let height = 40 + 260 * u32::try_from(self.panels.len().max(1)).unwrap_or(1);
        let root = SVGBackend::new(path, (900, height)).into_drawing_area();
        root.fill(&WHITE).map_err(to_io)?;
        let (title_area, body) = root.split_vertically(40);
        title_area
            .titled(&self.title, ("sans-serif", 20))
            .map_err(to_io)?;
        let x_max = self
            .panels
            .iter()
            .flat_map(|p| &p.series)
            .flat_map(|s| s.points.iter().map(|(x, _)| *x))
            .fold(1.0_f64, f64::max);
        let areas = body.split_evenly((self.panels.len().max(1), 1));
        for (panel, area) in self.panels.iter().zip(areas) {
            let values = || {
                panel
                    .series
                    .iter()
                    .flat_map(|s| s.points.iter().filter_map(|(_, y)| *y))
                    .filter(|y| !panel.log_y || *y > 0.0)
            };
            let max = values().fold(f64::MIN, f64::max);
            let min = values().fold(f64::MAX, f64::min);
            let (y_min, y_max) = panel.y_range.unwrap_or(if panel.log_y {
                if max > 0.0 {
                    (min * 0.8, max * 1.25)
                } else {
                    (1.0, 10.0)
                }
            } else {
                (0.0, if max > 0.0 { max * 1.1 } else { 1.0 })
            });
            // The same drawing on either kind of y axis.
            macro_rules! draw {
                ($y:expr) => {{
                    let mut chart = ChartBuilder::on(&area)
                        .margin(10)
                        .x_label_area_size(35)
                        .y_label_area_size(60)
                        .build_cartesian_2d(0.0..x_max, $y)
                        .map_err(to_io)?;
                    chart
                        .configure_mesh()
                        .x_desc(&self.x_label)
                        .y_desc(&panel.y_label)
                        .light_line_style(WHITE.mix(0.0))
                        .draw()
                        .map_err(to_io)?;
                    for (i, series) in panel.series.iter().enumerate() {
                        let color = COLORS[i % COLORS.len()];
                        let style = ShapeStyle::from(&color).stroke_width(2);
                        let mut first = true;
                        for seg in series.segments() {
                            let seg: Vec<(f64, f64)> = seg
                                .into_iter()
                                .filter(|(_, y)| !panel.log_y || *y > 0.0)
                                .collect();
                            let drawn = chart
                                .draw_series(LineSeries::new(seg, style))
                                .map_err(to_io)?;
                            if first {
                                first = false;
                                drawn.label(series.name.clone()).legend(move |(x, y)| {
                                    PathElement::new(vec![(x, y), (x + 20, y)], style)
                                });
                            }
                        }
                    }
                    chart
                        .configure_series_labels()
                        .background_style(WHITE.mix(0.85))
                        .border_style(BLACK)
                        .position(SeriesLabelPosition::UpperRight)
                        .draw()
                        .map_err(to_io)?;
                }};
            }
            if panel.log_y {
                draw!((y_min..y_max).log_scale());
            } else {
                draw!(y_min..y_max);
            }
        }
        root.present().map_err(to_io)?;
        Ok(())
    }
}

/// A table written as CSV: a header row, then one row per sample. Cells are written as
/// given; cells containing `,`, `"` or a newline are quoted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Csv {
    /// Column names.
    pub header: Vec<String>,
    /// Rows of cells.
    pub rows: Vec<Vec<String>>,
}

impl Csv {
    /// A table with these columns.
    pub fn new(header: &[&str]) -> Self {
        Csv {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// The CSV text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let cells: Vec<String> = row.iter().map(|c| quote(c)).collect();
            let _ = writeln!(out, "{}", cells.join(","));
        }
        out
    }

    /// Writes the CSV file.
    ///
    /// # Errors
    ///
    /// The file cannot be written.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, self.render())
    }
}

fn quote(cell: &str) -> String {
    if cell.contains([',', '"', '\n']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_owned()
    }
}

/// Formats an optional number for a CSV cell (empty when `None`).
pub fn cell(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        let mut t = Csv::new(&["t", "what"]);
        t.push(vec!["1".into(), "a,b".into()]);
        t.push(vec!["2".into(), "say \"hi\"".into()]);
        assert_eq!(t.render(), "t,what\n1,\"a,b\"\n2,\"say \"\"hi\"\"\"\n");
        assert_eq!(cell(None), "");
        assert_eq!(cell(Some(1.5)), "1.500");
    }

    #[test]
    fn step_series_hold_values_and_gaps_split_lines() {
        let s = Series::step(
            "cap",
            vec![
                (0.0, Some(3.0)),
                (10.0, Some(0.3)),
                (20.0, None),
                (30.0, Some(1.0)),
            ],
        );
        let segs = s.segments();
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0], vec![(0.0, 3.0), (10.0, 3.0), (10.0, 0.3)]);
        assert_eq!(segs[1], vec![(30.0, 1.0), (30.0, 1.0)]);
    }

    #[test]
    fn writes_an_svg() {
        let dir = std::env::temp_dir().join(format!("netem-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chart.svg");
        let chart = Chart {
            title: "test".into(),
            x_label: "s".into(),
            panels: vec![
                Panel {
                    y_label: "Mbit/s".into(),
                    series: vec![
                        Series::step("capacity", vec![(0.0, Some(3.0)), (5.0, Some(0.3))]),
                        Series::line(
                            "estimate",
                            vec![(0.0, Some(1.0)), (2.0, None), (5.0, Some(0.2))],
                        ),
                    ],
                    y_range: None,
                    log_y: false,
                },
                Panel {
                    y_label: "kbit/s".into(),
                    series: vec![Series::line(
                        "rate",
                        vec![(0.0, Some(0.0)), (1.0, Some(60.0)), (2.0, Some(3000.0))],
                    )],
                    y_range: None,
                    log_y: true,
                },
            ],
        };
        chart.write_svg(&path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("capacity") && svg.contains("estimate"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
