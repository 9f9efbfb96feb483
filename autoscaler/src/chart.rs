//! The SVG chart `weir autoscale simulate --svg` draws: load and desired replicas over time on
//! ONE y scale, with tick values on both axes, a legend, and panic periods shaded.
//!
//! Both lines share the y axis on purpose: drawn each to its own maximum, a 6-replica line and a
//! 40-request line looked equally tall and the chart said nothing about how many replicas carry
//! how much load. Concurrency and replica counts are both small counts, so one scale reads well.

use std::fmt::Write as _;

use crate::simulate::Step;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 55.0;
const LOAD_COLOUR: &str = "#888";
const REPLICAS_COLOUR: &str = "#1f5fbf";
const PANIC_COLOUR: &str = "#fde2e2";

/// A step of 1, 2 or 5 × 10^k no smaller than `raw` (and no smaller than `minimum`), so ticks
/// fall on round values.
fn nice_step(raw: f64, minimum: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return minimum;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    (nice * magnitude).max(minimum)
}

/// A tick label: whole numbers without decimals, others with at most two.
fn label(value: f64) -> String {
    if (value - value.round()).abs() < 1e-9 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.2}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// An axis from 0 to a round maximum at or above `max`, with its tick step.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axis {
    max: f64,
    step: f64,
}

impl Axis {
    fn new(max: f64, ticks: f64, minimum_step: f64) -> Axis {
        let max = max.max(minimum_step);
        let step = nice_step(max / ticks, minimum_step);
        Axis {
            max: (max / step).ceil() * step,
            step,
        }
    }

    fn ticks(&self) -> impl Iterator<Item = f64> + '_ {
        let count = (self.max / self.step).round() as u32;
        (0..=count).map(move |i| f64::from(i) * self.step)
    }
}

fn x_of(t: f64, time: Axis) -> f64 {
    LEFT + t / time.max * (WIDTH - LEFT - RIGHT)
}

fn y_of(value: f64, values: Axis) -> f64 {
    HEIGHT - BOTTOM - value / values.max * (HEIGHT - TOP - BOTTOM)
}

/// The points of a step line (the value holds until the next step).
fn line(steps: &[Step], value: impl Fn(&Step) -> f64, time: Axis, values: Axis) -> String {
    let mut points = String::new();
    let mut last: Option<f64> = None;
    for step in steps {
        let x = x_of(step.t, time);
        if let Some(previous) = last {
            let _ = write!(points, "{x:.1},{:.1} ", y_of(previous, values));
        }
        let _ = write!(points, "{x:.1},{:.1} ", y_of(value(step), values));
        last = Some(value(step));
    }
    points.trim_end().to_owned()
}

/// A self-contained SVG chart of a simulation: `metric` (observed load, grey) and desired
/// replicas (blue) on one shared y scale over time in seconds, panic periods shaded.
pub fn svg(steps: &[Step], metric: &str) -> String {
    let load_max = steps.iter().map(|s| s.observed).fold(0.0, f64::max);
    let replicas_max = steps.iter().map(|s| s.desired_replicas).max().unwrap_or(0);
    let time = Axis::new(steps.last().map_or(0.0, |s| s.t), 8.0, 1.0);
    let values = Axis::new(load_max.max(f64::from(replicas_max)), 5.0, 1.0);
    let (plot_bottom, plot_right) = (HEIGHT - BOTTOM, WIDTH - RIGHT);

    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
"#
    );
    // One shaded band per panic period (a step panics until the next step).
    let mut from: Option<f64> = None;
    for (index, step) in steps.iter().enumerate() {
        let end = steps.get(index + 1).map_or(step.t, |next| next.t);
        if step.panic && from.is_none() {
            from = Some(step.t);
        }
        let closes = !steps.get(index + 1).is_some_and(|next| next.panic);
        if let (Some(start), true) = (from, closes) {
            let (left, right) = (x_of(start, time), x_of(end, time));
            let _ = writeln!(
                out,
                r#"<rect class="panic" x="{left:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="{PANIC_COLOUR}"/>"#,
                right - left,
                plot_bottom - TOP
            );
            from = None;
        }
    }
    // Grid lines and tick values: y on the left, time along the bottom.
    for value in values.ticks() {
        let y = y_of(value, values);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{plot_right}" y2="{y:.1}" stroke="#eee"/>
<text class="y-tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT - 6.0,
            y + 4.0,
            label(value)
        );
    }
    for t in time.ticks() {
        let x = x_of(t, time);
        let _ = writeln!(
            out,
            r#"<line x1="{x:.1}" y1="{plot_bottom}" x2="{x:.1}" y2="{:.1}" stroke="black"/>
<text class="x-tick" x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            plot_bottom + 5.0,
            plot_bottom + 18.0,
            label(t)
        );
    }
    let _ = writeln!(
        out,
        r##"<polyline id="load" fill="none" stroke="{LOAD_COLOUR}" stroke-width="1.5" points="{}"/>
<polyline id="replicas" fill="none" stroke="{REPLICAS_COLOUR}" stroke-width="2" points="{}"/>
<line x1="{LEFT}" y1="{plot_bottom}" x2="{plot_right}" y2="{plot_bottom}" stroke="black"/>
<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{plot_bottom}" stroke="black"/>
<text x="{:.1}" y="{:.1}" text-anchor="middle">time (s)</text>
<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">{metric} and replicas (one scale)</text>"##,
        line(steps, |s| s.observed, time, values),
        line(steps, |s| f64::from(s.desired_replicas), time, values),
        (LEFT + plot_right) / 2.0,
        HEIGHT - 12.0,
        (TOP + plot_bottom) / 2.0,
    );
    // The legend, above the plot.
    let _ = write!(
        out,
        r#"<g class="legend">
<line x1="{LEFT}" y1="22" x2="{:.0}" y2="22" stroke="{LOAD_COLOUR}" stroke-width="1.5"/>
<text x="{:.0}" y="26">{metric} (observed, max {})</text>
<line x1="{:.0}" y1="22" x2="{:.0}" y2="22" stroke="{REPLICAS_COLOUR}" stroke-width="2"/>
<text x="{:.0}" y="26">desired replicas (max {replicas_max})</text>
<rect x="{:.0}" y="15" width="20" height="12" fill="{PANIC_COLOUR}"/>
<text x="{:.0}" y="26">panic</text>
</g>
</svg>
"#,
        LEFT + 24.0,
        LEFT + 30.0,
        label(load_max),
        LEFT + 260.0,
        LEFT + 284.0,
        LEFT + 290.0,
        LEFT + 480.0,
        LEFT + 506.0,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(t: f64, observed: f64, desired_replicas: u32, panic: bool) -> Step {
        Step {
            t,
            observed,
            desired_replicas,
            ready_replicas: desired_replicas,
            panic,
            reason: "",
        }
    }

    /// The (x, y) points of the polyline with this id.
    fn points(svg: &str, id: &str) -> Vec<(f64, f64)> {
        let start = svg.find(&format!(r#"id="{id}""#)).unwrap();
        let rest = &svg[start..];
        let from = rest.find("points=\"").unwrap() + "points=\"".len();
        let to = from + rest[from..].find('"').unwrap();
        rest[from..to]
            .split_whitespace()
            .map(|pair| {
                let (x, y) = pair.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    fn texts(svg: &str, class: &str) -> Vec<String> {
        svg.split(&format!(r#"<text class="{class}""#))
            .skip(1)
            .map(|rest| {
                let from = rest.find('>').unwrap() + 1;
                rest[from..from + rest[from..].find('<').unwrap()].to_owned()
            })
            .collect()
    }

    #[test]
    fn ticks_are_round_and_cover_the_data() {
        assert_eq!(
            Axis::new(40.0, 5.0, 1.0),
            Axis {
                max: 40.0,
                step: 10.0
            }
        );
        assert_eq!(
            Axis::new(43.0, 5.0, 1.0),
            Axis {
                max: 50.0,
                step: 10.0
            }
        );
        assert_eq!(
            Axis::new(3.0, 5.0, 1.0),
            Axis {
                max: 3.0,
                step: 1.0
            }
        );
        assert_eq!(
            Axis::new(0.0, 5.0, 1.0),
            Axis {
                max: 1.0,
                step: 1.0
            }
        );
        assert_eq!(
            Axis::new(502.0, 8.0, 1.0),
            Axis {
                max: 600.0,
                step: 100.0
            }
        );
        assert_eq!(label(2.5), "2.5");
        assert_eq!(label(100.0), "100");
    }

    #[test]
    fn both_lines_share_one_scale_and_the_axes_carry_values() {
        // Load peaks at 40, replicas at 6: drawn to their own maxima both would reach the top.
        let steps = [
            step(0.0, 10.0, 2, false),
            step(120.0, 40.0, 6, true),
            step(180.0, 40.0, 6, true),
            step(240.0, 10.0, 2, false),
            step(500.0, 10.0, 2, false),
        ];
        let svg = svg(&steps, "concurrency");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(texts(&svg, "y-tick"), ["0", "10", "20", "30", "40"]);
        assert_eq!(
            texts(&svg, "x-tick"),
            ["0", "100", "200", "300", "400", "500"]
        );
        assert!(svg.contains(">time (s)<") && svg.contains("concurrency and replicas"));
        assert!(svg.contains("concurrency (observed, max 40)"), "{svg}");
        assert!(svg.contains("desired replicas (max 6)"), "{svg}");
        assert_eq!(
            svg.matches(r#"class="panic""#).count(),
            1,
            "one band for one panic period"
        );
        let band = format!(r#"x="{:.1}""#, x_of(120.0, Axis::new(500.0, 8.0, 1.0)));
        assert!(svg.contains(&band), "the band starts at 120 s: {svg}");

        let bottom = HEIGHT - BOTTOM;
        let top = |id: &str| {
            points(&svg, id)
                .iter()
                .map(|(_, y)| *y)
                .fold(f64::INFINITY, f64::min)
        };
        let height = |id: &str| bottom - top(id);
        assert!(
            (height("load") - (HEIGHT - TOP - BOTTOM)).abs() < 0.2,
            "40 is the top tick"
        );
        let ratio = height("replicas") / height("load");
        assert!(
            (ratio - 6.0 / 40.0).abs() < 0.01,
            "6 replicas drawn at 6 on the load's scale: {ratio}"
        );
    }
}
