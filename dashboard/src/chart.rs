//! Line charts as inline SVG, rendered on the server: the pages need no chart library and no
//! script, and a chart reads the same in every browser and in the tests.
//!
//! The SVG has a fixed coordinate system (a [`WIDTH`]-wide viewBox) and `width="100%"`, so it
//! scales with its container down to a 360 px phone. Colours come from the stylesheet, never
//! from here: each series carries `class="series-N"` (the theme maps it to `--series-N`) and
//! axes and text use `currentColor`, so dark and light themes both work and the page's
//! `Content-Security-Policy` needs no inline styles. The stylesheet's `.series-N` rules set
//! `fill` too (for dots), which beats a `fill="none"` attribute, so lines also carry
//! `class="line"` and runs.css keeps `.chart path.line` unfilled. Labels are user data (metric
//! keys, run names): everything written into the SVG is escaped.

use std::fmt::Write;

/// One line of a chart: its legend label and its `(x, y)` points, in any order.
pub(crate) struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// What [`svg`] draws. With `x_is_time`, x values are milliseconds since the Unix epoch (MLflow's
/// timestamps) and the axis reads `HH:MM:SS` in UTC.
pub(crate) struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_is_time: bool,
    pub series: Vec<Series>,
}

/// The viewBox width; the height grows with the legend's rows.
const WIDTH: f64 = 640.0;
/// The plot area's height plus the title, ticks and axis labels around it.
const BASE_HEIGHT: f64 = 240.0;
const LEFT: f64 = 84.0;
const RIGHT: f64 = 40.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 50.0;
/// Legend entries per row and the row height.
const LEGEND_COLUMNS: usize = 2;
const LEGEND_ROW: f64 = 24.0;
/// The stylesheet defines this many series colours; further series reuse them.
const COLOURS: usize = 10;
/// About this many ticks per axis.
const TICKS: usize = 5;

/// The chart as an `<svg>` element, ready to be placed in a page as it is.
pub(crate) fn svg(chart: &Chart) -> String {
    let series: Vec<Vec<(f64, f64)>> = chart.series.iter().map(|s| finite(&s.points)).collect();
    let legend_rows = chart.series.len().div_ceil(LEGEND_COLUMNS);
    let height = BASE_HEIGHT + legend_rows as f64 * LEGEND_ROW;
    let plot = Plot {
        left: LEFT,
        right: WIDTH - RIGHT,
        top: TOP,
        bottom: BASE_HEIGHT - BOTTOM,
    };
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="100%" preserveAspectRatio="xMidYMid meet" role="img" font-size="11" fill="currentColor"><title>{}</title>"#,
        escape(&chart.title)
    );
    let _ = write!(
        out,
        r#"<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{}</text>"#,
        escape(&chart.title)
    );
    let all: Vec<(f64, f64)> = series.iter().flatten().copied().collect();
    if all.is_empty() {
        frame(&mut out, &plot);
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="muted">no data</text>"#,
            (plot.left + plot.right) / 2.0,
            (plot.top + plot.bottom) / 2.0
        );
    } else {
        let (x_min, x_max) = bounds(all.iter().map(|p| p.0));
        let (y_min, y_max) = bounds(all.iter().map(|p| p.1));
        let x_axis = if chart.x_is_time {
            time_axis(x_min, x_max)
        } else {
            // Steps are whole numbers: no tick at step 0.5.
            let whole = all.iter().all(|p| p.0.fract() == 0.0);
            number_axis(x_min, x_max, whole)
        };
        let y_axis = number_axis(y_min, y_max, false);
        frame(&mut out, &plot);
        grid(&mut out, &plot, &x_axis, &y_axis, chart.x_is_time);
        for (index, points) in series.iter().enumerate() {
            line(&mut out, &plot, &x_axis, &y_axis, index, points);
        }
    }
    axis_labels(&mut out, &plot, chart);
    legend(&mut out, chart, BASE_HEIGHT);
    out.push_str("</svg>");
    out
}

/// The plot area in viewBox coordinates.
struct Plot {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

/// An axis: the domain it shows and where its ticks are.
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    /// Decimals for number labels (time labels ignore it).
    decimals: usize,
}

impl Axis {
    /// Where `value` falls between `from` (at `lo`) and `to` (at `hi`).
    fn place(&self, value: f64, from: f64, to: f64) -> f64 {
        from + (value - self.lo) / (self.hi - self.lo) * (to - from)
    }
}

/// The finite points, sorted by x so the line does not zig-zag back.
fn finite(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut kept: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    kept.sort_by(|a, b| a.0.total_cmp(&b.0));
    kept
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// A "nice" number near `value` (1, 2, 5 or 10 times a power of ten): rounded to the nearest
/// when `round`, else the next one up.
fn nice(value: f64, round: bool) -> f64 {
    let exponent = value.log10().floor();
    let fraction = value / 10f64.powf(exponent);
    let nice = if round {
        match fraction {
            f if f < 1.5 => 1.0,
            f if f < 3.0 => 2.0,
            f if f < 7.0 => 5.0,
            _ => 10.0,
        }
    } else {
        match fraction {
            f if f <= 1.0 => 1.0,
            f if f <= 2.0 => 2.0,
            f if f <= 5.0 => 5.0,
            _ => 10.0,
        }
    };
    nice * 10f64.powf(exponent)
}

/// A number axis covering `min..=max` with about [`TICKS`] ticks at nice numbers (whole ones
/// when `whole`); a single value gets a small range around it so it sits in the middle.
fn number_axis(min: f64, max: f64, whole: bool) -> Axis {
    let (min, max) = if max > min {
        (min, max)
    } else {
        let pad = if min == 0.0 || whole {
            1.0
        } else {
            min.abs() * 0.1
        };
        (min - pad, max + pad)
    };
    let mut step = nice(nice(max - min, false) / (TICKS - 1) as f64, true);
    if whole {
        step = step.max(1.0);
    }
    let lo = (min / step).floor() * step;
    let hi = (max / step).ceil() * step;
    let decimals = (-step.log10().floor()).clamp(0.0, 12.0) as usize;
    Axis {
        lo,
        hi,
        ticks: ticks(lo, hi, step),
        decimals,
    }
}

/// A time axis (milliseconds) with ticks on whole seconds, minutes or hours.
fn time_axis(min: f64, max: f64) -> Axis {
    const SECOND: f64 = 1000.0;
    const STEPS: [f64; 17] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
        10800.0, 21600.0, 43200.0,
    ];
    let (min, max) = if max > min {
        (min, max)
    } else {
        (min - 30.0 * SECOND, max + 30.0 * SECOND)
    };
    let wanted = (max - min) / (TICKS - 1) as f64;
    let step = STEPS
        .iter()
        .map(|s| s * SECOND)
        .find(|s| *s >= wanted)
        .unwrap_or_else(|| (wanted / 86_400_000.0).ceil() * 86_400_000.0);
    let lo = (min / step).floor() * step;
    let hi = (max / step).ceil() * step;
    Axis {
        lo,
        hi,
        ticks: ticks(lo, hi, step),
        decimals: 0,
    }
}

/// `lo, lo + step, …, hi`, computed by multiplication so errors do not add up (bounded: the
/// nice step keeps it near [`TICKS`]).
fn ticks(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let count = ((hi - lo) / step).round() as usize;
    (0..=count.min(4 * TICKS))
        .map(|i| lo + i as f64 * step)
        .collect()
}

/// A number label with `decimals` digits, or in exponent form when that would be unreadable.
fn number_label(value: f64, decimals: usize) -> String {
    let magnitude = value.abs();
    if magnitude != 0.0 && (magnitude >= 1e7 || decimals > 6) {
        format!("{value:.2e}")
    } else {
        let text = format!("{value:.decimals$}");
        // "-0" and "-0.00" read as a mistake.
        if text
            .trim_start_matches('-')
            .chars()
            .all(|c| c == '0' || c == '.')
        {
            text.trim_start_matches('-').to_owned()
        } else {
            text
        }
    }
}

/// Milliseconds since the epoch as `HH:MM:SS` (UTC).
fn time_label(ms: f64) -> String {
    let seconds = (ms / 1000.0).floor() as i64;
    let day = seconds.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}

fn frame(out: &mut String, plot: &Plot) {
    let _ = write!(
        out,
        r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="currentColor" stroke-opacity="0.4"/>"#,
        plot.left,
        plot.top,
        plot.right - plot.left,
        plot.bottom - plot.top
    );
}

/// Tick marks, faint grid lines and tick labels on both axes.
fn grid(out: &mut String, plot: &Plot, x: &Axis, y: &Axis, x_is_time: bool) {
    for &tick in &x.ticks {
        let at = x.place(tick, plot.left, plot.right);
        let label = if x_is_time {
            time_label(tick)
        } else {
            number_label(tick, x.decimals)
        };
        let _ = write!(
            out,
            r#"<line x1="{at:.1}" y1="{:.1}" x2="{at:.1}" y2="{:.1}" stroke="currentColor" stroke-opacity="0.12"/><text x="{at:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            plot.top,
            plot.bottom,
            plot.bottom + 18.0,
            escape(&label)
        );
    }
    for &tick in &y.ticks {
        let at = y.place(tick, plot.bottom, plot.top);
        let _ = write!(
            out,
            r#"<line x1="{:.1}" y1="{at:.1}" x2="{:.1}" y2="{at:.1}" stroke="currentColor" stroke-opacity="0.12"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            plot.left,
            plot.right,
            plot.left - 4.0,
            at + 4.0,
            escape(&number_label(tick, y.decimals))
        );
    }
}

/// One series: a polyline through its points, or a dot when it has only one.
fn line(out: &mut String, plot: &Plot, x: &Axis, y: &Axis, index: usize, points: &[(f64, f64)]) {
    let class = format!("series-{}", index % COLOURS);
    let at = |(px, py): (f64, f64)| {
        (
            x.place(px, plot.left, plot.right),
            y.place(py, plot.bottom, plot.top),
        )
    };
    match points {
        [] => {}
        [only] => {
            let (cx, cy) = at(*only);
            // A circle of radius 1.5 stroked 3 wide: a solid dot in the stroke colour the
            // stylesheet gives the series (fill would need a rule of its own).
            let _ = write!(
                out,
                r#"<circle class="{class}" cx="{cx:.1}" cy="{cy:.1}" r="1.5" fill="none" stroke-width="3"/>"#
            );
        }
        _ => {
            let mut d = String::new();
            for (i, point) in points.iter().enumerate() {
                let (px, py) = at(*point);
                let _ = write!(d, "{}{px:.1},{py:.1}", if i == 0 { "M" } else { " L" });
            }
            let _ = write!(
                out,
                r#"<path class="line {class}" d="{d}" fill="none" stroke-width="2" stroke-linejoin="round"/>"#
            );
        }
    }
}

fn axis_labels(out: &mut String, plot: &Plot, chart: &Chart) {
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        (plot.left + plot.right) / 2.0,
        plot.bottom + 40.0,
        escape(&chart.x_label)
    );
    // The title usually names what y is already; a second copy would only crowd the ticks.
    if chart.y_label.is_empty() || chart.y_label == chart.title {
        return;
    }
    let middle = (plot.top + plot.bottom) / 2.0;
    let _ = write!(
        out,
        r#"<text x="14" y="{middle:.1}" text-anchor="middle" transform="rotate(-90 14 {middle:.1})">{}</text>"#,
        escape(&chart.y_label)
    );
}

/// The legend below the plot: a short line in each series' colour and its label.
fn legend(out: &mut String, chart: &Chart, top: f64) {
    let column_width = (WIDTH - LEFT - RIGHT) / LEGEND_COLUMNS as f64;
    for (index, series) in chart.series.iter().enumerate() {
        let x = LEFT + (index % LEGEND_COLUMNS) as f64 * column_width;
        let y = top + (index / LEGEND_COLUMNS) as f64 * LEGEND_ROW + 8.0;
        let _ = write!(
            out,
            r#"<line class="series-{}" x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            index % COLOURS,
            x + 16.0,
            x + 22.0,
            y + 4.0,
            escape(&shorten(&series.label, 24))
        );
    }
}

/// At most `chars` characters of `text`, with an ellipsis when cut (a legend column is narrow).
fn shorten(text: &str, chars: usize) -> String {
    if text.chars().count() > chars {
        let kept: String = text.chars().take(chars - 1).collect();
        format!("{kept}…")
    } else {
        text.to_owned()
    }
}

/// Text for SVG content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML text; they cannot be meant here.
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(series: Vec<Series>, x_is_time: bool) -> Chart {
        Chart {
            title: "rmse".to_owned(),
            x_label: "step".to_owned(),
            y_label: "value".to_owned(),
            x_is_time,
            series,
        }
    }

    fn series(label: &str, points: &[(f64, f64)]) -> Series {
        Series {
            label: label.to_owned(),
            points: points.to_vec(),
        }
    }

    /// The `d` attributes of the paths drawn, in order.
    fn paths(svg: &str) -> Vec<String> {
        svg.split("<path ")
            .skip(1)
            .filter_map(|p| p.split("d=\"").nth(1))
            .filter_map(|p| p.split('"').next())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn draws_each_series_in_its_own_class_with_a_legend_and_title() {
        let out = svg(&chart(
            vec![
                series("run a", &[(0.0, 1.0), (1.0, 0.5), (2.0, 0.25)]),
                series("run b", &[(0.0, 2.0), (2.0, 1.0)]),
            ],
            false,
        ));
        assert!(out.starts_with("<svg "), "{out}");
        assert!(out.ends_with("</svg>"));
        assert!(out.contains("<title>rmse</title>"));
        assert!(out.contains(r#"width="100%""#));
        assert!(out.contains(r#"<path class="line series-0""#));
        assert!(out.contains(r#"<path class="line series-1""#));
        assert!(out.contains(">run a</text>") && out.contains(">run b</text>"));
        assert_eq!(paths(&out).len(), 2);
        assert_eq!(
            paths(&out)[0].matches('L').count(),
            2,
            "three points, two segments"
        );
        assert!(!out.contains("no data"));
        assert!(!out.contains("style="), "no inline styles under the CSP");
    }

    #[test]
    fn escapes_every_label() {
        let mut evil = chart(
            vec![series("<script>x</script>", &[(0.0, 1.0), (1.0, 2.0)])],
            false,
        );
        evil.title = "a\"b<c>&'".to_owned();
        evil.x_label = "</text><script>".to_owned();
        evil.y_label = "y\"onload=\"x<".to_owned();
        let out = svg(&evil);
        assert!(!out.contains("<script"), "{out}");
        assert!(!out.contains("y\"onload"), "{out}");
        assert!(out.contains(">y&quot;onload=&quot;x&lt;</text>"), "{out}");
        assert!(
            out.contains("<title>a&quot;b&lt;c&gt;&amp;&#39;</title>"),
            "{out}"
        );
        assert!(out.contains("&lt;/text&gt;&lt;script&gt;"));
    }

    #[test]
    fn a_y_label_repeating_the_title_is_left_out() {
        let mut same = chart(vec![series("a", &[(0.0, 1.0)])], false);
        same.y_label = same.title.clone();
        assert_eq!(svg(&same).matches(">rmse</text>").count(), 1);
        same.y_label = "seconds".to_owned();
        assert!(svg(&same).contains(">seconds</text>"));
    }

    #[test]
    fn skips_non_finite_points_and_sorts_by_x() {
        let out = svg(&chart(
            vec![series(
                "a",
                &[
                    (2.0, 3.0),
                    (0.0, f64::NAN),
                    (1.0, f64::INFINITY),
                    (0.0, 1.0),
                    (f64::NAN, 1.0),
                    (1.0, 2.0),
                ],
            )],
            false,
        ));
        assert!(!out.contains("NaN") && !out.contains("inf"), "{out}");
        let d = &paths(&out)[0];
        assert_eq!(d.matches('L').count(), 2, "{d}");
        let xs: Vec<f64> = d
            .split(['M', 'L'])
            .filter(|p| !p.trim().is_empty())
            .map(|p| p.trim().split(',').next().unwrap().parse().unwrap())
            .collect();
        assert!(xs.windows(2).all(|w| w[0] < w[1]), "{xs:?}");
    }

    #[test]
    fn one_point_is_a_dot() {
        let out = svg(&chart(vec![series("a", &[(3.0, 0.5)])], false));
        assert!(out.contains(r#"<circle class="series-0""#), "{out}");
        assert!(paths(&out).is_empty());
    }

    #[test]
    fn an_empty_chart_says_no_data() {
        for empty in [
            vec![],
            vec![series("a", &[]), series("b", &[(f64::NAN, 1.0)])],
        ] {
            let out = svg(&chart(empty, false));
            assert!(out.contains(">no data</text>"), "{out}");
            assert!(paths(&out).is_empty());
            assert!(out.contains("<title>rmse</title>"));
        }
    }

    fn labels(axis: &Axis) -> Vec<String> {
        axis.ticks
            .iter()
            .map(|t| number_label(*t, axis.decimals))
            .collect()
    }

    #[test]
    fn ticks_are_nice_numbers_around_the_data() {
        let axis = number_axis(0.13, 0.87, false);
        assert!(axis.lo <= 0.13 && axis.hi >= 0.87);
        assert_eq!(labels(&axis), ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        assert_eq!(
            labels(&number_axis(0.0, 1000.0, true)),
            ["0", "200", "400", "600", "800", "1000"]
        );
        assert_eq!(
            labels(&number_axis(-3.0, 3.0, false)),
            ["-4", "-2", "0", "2", "4"]
        );
        // Steps 0..2 tick on whole steps only.
        assert_eq!(
            labels(&number_axis(0.0, 2.0, false)),
            ["0.0", "0.5", "1.0", "1.5", "2.0"]
        );
        assert_eq!(labels(&number_axis(0.0, 2.0, true)), ["0", "1", "2"]);
        // One value: a range around it, not a division by zero.
        let flat = number_axis(5.0, 5.0, false);
        assert!(flat.lo < 5.0 && flat.hi > 5.0);
        assert_eq!(labels(&number_axis(3.0, 3.0, true)), ["2", "3", "4"]);
        let zero = number_axis(0.0, 0.0, false);
        assert!(zero.lo < 0.0 && zero.hi > 0.0);
    }

    #[test]
    fn number_labels_stay_readable() {
        assert_eq!(number_label(-0.0, 2), "0.00");
        assert_eq!(number_label(1.5, 1), "1.5");
        assert_eq!(number_label(2e9, 0), "2.00e9");
        assert_eq!(number_label(3e-9, 9), "3.00e-9");
    }

    #[test]
    fn a_time_axis_reads_utc_clock_times_on_whole_seconds() {
        // 2026-11-30 06:40:12 UTC and 90 seconds later.
        let start = 1_795_934_412_000.0;
        let out = svg(&chart(
            vec![series("a", &[(start, 1.0), (start + 90_000.0, 2.0)])],
            true,
        ));
        assert!(out.contains(">06:40:00</text>"), "{out}");
        let axis = time_axis(start, start + 90_000.0);
        assert!(axis.ticks.iter().all(|t| t % 1000.0 == 0.0));
        assert!(
            axis.ticks.len() >= 3 && axis.ticks.len() <= 8,
            "{:?}",
            axis.ticks
        );
        assert_eq!(time_label(start), "06:40:12");
        assert_eq!(time_label(0.0), "00:00:00");
        // A single time gets a minute around it.
        let one = time_axis(start, start);
        assert!(one.lo < start && one.hi > start);
    }

    #[test]
    fn many_series_reuse_the_ten_colours_and_grow_the_legend() {
        let many: Vec<Series> = (0..12)
            .map(|i| series(&format!("s{i}"), &[(0.0, i as f64), (1.0, 1.0)]))
            .collect();
        let out = svg(&chart(many, false));
        assert_eq!(out.matches(r#"<path class="line series-1""#).count(), 2);
        assert!(!out.contains("series-10"));
        assert!(
            out.contains(r#"viewBox="0 0 640 384""#),
            "six legend rows: {out}"
        );
    }

    #[test]
    fn long_legend_labels_are_cut() {
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abc", 4), "abc");
    }
}
