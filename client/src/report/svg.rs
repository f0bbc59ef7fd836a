//! Line plots as inline SVG text, for the HTML report: axes with round tick values,
//! one `<path>` per line, a dashed vertical marker (the end of the ramp), a legend, and
//! a native tooltip (`<title>`) on every point, so the plot is readable without any
//! script. Pure string building: no I/O, no dependency.
//!
//! Every `<path class="line">` carries `data-name` and `data-points` (how many points
//! it draws), which the browser test compares with the report's samples.

use std::fmt::Write as _;

/// Plot area size in SVG user units.
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 240.0;
/// Margins around the plot area, for tick labels, the title and the legend.
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 40.0;

/// Points per line above which no per-point tooltip is drawn (it would weigh more
/// than the plot).
const MAX_TOOLTIPS: usize = 600;

/// Line colours, in order (distinguishable, and for the common red-green deficiency).
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
];

/// Text made safe for HTML and SVG content and attribute values: `&`, `<`, `>`, `"`
/// and `'` become character references, so a user string (a URL, a command line, a
/// close reason) can never open a tag or end an attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// One line of a plot: `None` points break it (a second without data).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Line {
    /// Legend text.
    pub name: String,
    /// `(x, y)` points, in order of x.
    pub points: Vec<Option<(f64, f64)>>,
}

impl Line {
    /// A line named `name` through `points`.
    pub fn new(name: impl Into<String>, points: Vec<Option<(f64, f64)>>) -> Self {
        Self {
            name: name.into(),
            points,
        }
    }

    fn drawn(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.points
            .iter()
            .flatten()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    }
}

/// A plot of lines over a shared x axis.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plot {
    /// `id` of the `<svg>` element.
    pub id: String,
    /// Title above the plot.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis (its unit).
    pub y_label: String,
    /// The lines.
    pub lines: Vec<Line>,
    /// A vertical marker at this x, with its label.
    pub marker: Option<(f64, String)>,
    /// The y axis ends at least here (e.g. 1 for a CDF).
    pub y_max: Option<f64>,
}

/// A round step for about `target` ticks over `range`: 1, 2 or 5 times a power of ten.
fn nice_step(range: f64, target: f64) -> f64 {
    if !(range.is_finite() && range > 0.0) {
        return 1.0;
    }
    let raw = range / target;
    let magnitude = 10f64.powf(raw.log10().floor());
    let norm = raw / magnitude;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// A tick value as short text: no trailing zeros, ten thousands and more as `k`.
pub fn format_number(v: f64) -> String {
    let a = v.abs();
    if a >= 10_000.0 {
        return format!("{}k", trim_zeros(format!("{:.1}", v / 1000.0)));
    }
    trim_zeros(if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    })
}

fn trim_zeros(text: String) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// The plot as an `<svg>` element.
pub fn render(plot: &Plot) -> String {
    let all: Vec<(f64, f64)> = plot.lines.iter().flat_map(Line::drawn).collect();
    let mut x_min = all.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let mut x_max = all.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    if let Some((m, _)) = &plot.marker {
        if m.is_finite() {
            x_min = x_min.min(*m);
            x_max = x_max.max(*m);
        }
    }
    if !x_min.is_finite() {
        (x_min, x_max) = (0.0, 1.0);
    }
    x_min = x_min.min(0.0);
    if x_max <= x_min {
        x_max = x_min + 1.0;
    }
    let data_y = all.iter().map(|p| p.1).fold(0.0f64, f64::max);
    let y_top = data_y.max(plot.y_max.unwrap_or(0.0));
    let y_step = nice_step(if y_top > 0.0 { y_top } else { 1.0 }, 4.0);
    let y_max = (y_top / y_step).ceil().max(1.0) * y_step;
    let x_step = nice_step(x_max - x_min, 8.0);

    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let sx = |x: f64| LEFT + (x - x_min) / (x_max - x_min) * plot_w;
    let sy = |y: f64| TOP + plot_h - (y / y_max).clamp(0.0, 1.05) * plot_h;

    let mut s = String::with_capacity(4096);
    let _ = write!(
        s,
        r#"<svg id="{id}" class="plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{title}">"#,
        id = escape(&plot.id),
        title = escape(&plot.title),
    );
    let _ = write!(
        s,
        r#"<text class="title" x="{LEFT}" y="18" font-size="14" font-weight="bold">{}</text>"#,
        escape(&plot.title)
    );
    // Grid and y tick labels.
    let mut y = 0.0;
    while y <= y_max + y_step / 2.0 {
        let py = sy(y);
        let _ = write!(
            s,
            r##"<line class="grid" x1="{LEFT}" x2="{x2}" y1="{py:.1}" y2="{py:.1}" stroke="#ddd"/><text class="ytick" x="{tx}" y="{ty:.1}" font-size="11" text-anchor="end">{label}</text>"##,
            x2 = WIDTH - RIGHT,
            tx = LEFT - 6.0,
            ty = py + 4.0,
            label = format_number(y),
        );
        y += y_step;
    }
    // X tick labels.
    let mut x = (x_min / x_step).ceil() * x_step;
    while x <= x_max + x_step / 1000.0 {
        let px = sx(x);
        let _ = write!(
            s,
            r##"<line class="xtickmark" x1="{px:.1}" x2="{px:.1}" y1="{b}" y2="{b2}" stroke="#888"/><text class="xtick" x="{px:.1}" y="{ty}" font-size="11" text-anchor="middle">{label}</text>"##,
            b = TOP + plot_h,
            b2 = TOP + plot_h + 4.0,
            ty = TOP + plot_h + 16.0,
            label = format_number(x),
        );
        x += x_step;
    }
    let _ = write!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/><text class="xlabel" x="{cx}" y="{ly}" font-size="11" text-anchor="middle">{xl}</text><text class="ylabel" x="12" y="{cy}" font-size="11" text-anchor="middle" transform="rotate(-90 12 {cy})">{yl}</text>"##,
        cx = LEFT + plot_w / 2.0,
        ly = HEIGHT - 6.0,
        cy = TOP + plot_h / 2.0,
        xl = escape(&plot.x_label),
        yl = escape(&plot.y_label),
    );
    if let Some((m, label)) = &plot.marker {
        if m.is_finite() {
            let px = sx(*m);
            let _ = write!(
                s,
                r##"<line class="marker" x1="{px:.1}" x2="{px:.1}" y1="{TOP}" y2="{b}" stroke="#555" stroke-dasharray="4 3"/><text class="marker-label" x="{tx:.1}" y="{ty}" font-size="10" fill="#555">{l}</text>"##,
                b = TOP + plot_h,
                tx = px + 3.0,
                ty = TOP + 10.0,
                l = escape(label),
            );
        }
    }
    if all.is_empty() {
        let _ = write!(
            s,
            r##"<text class="nodata" x="{cx}" y="{cy}" font-size="13" text-anchor="middle" fill="#888">no data</text>"##,
            cx = LEFT + plot_w / 2.0,
            cy = TOP + plot_h / 2.0,
        );
    }
    for (i, line) in plot.lines.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let count = line.drawn().count();
        // Legend, on the row under the title, one entry per line.
        let lx = LEFT + 120.0 * i as f64;
        let _ = write!(
            s,
            r#"<rect x="{lx}" y="23" width="10" height="10" fill="{colour}"/><text class="legend" x="{tx}" y="32" font-size="11">{name}</text>"#,
            tx = lx + 14.0,
            name = escape(&line.name),
        );
        if count == 0 {
            continue;
        }
        let mut d = String::with_capacity(count * 14);
        let mut pen_up = true;
        for p in &line.points {
            match p {
                Some((x, y)) if x.is_finite() && y.is_finite() => {
                    let _ = write!(
                        d,
                        "{}{:.1},{:.1}",
                        if pen_up { "M" } else { " L" },
                        sx(*x),
                        sy(*y)
                    );
                    pen_up = false;
                }
                _ => pen_up = true,
            }
        }
        let _ = write!(
            s,
            r#"<path class="line" data-name="{name}" data-points="{count}" d="{d}" fill="none" stroke="{colour}" stroke-width="1.5"><title>{name}</title></path>"#,
            name = escape(&line.name),
        );
        if count <= MAX_TOOLTIPS {
            let _ = write!(s, r#"<g class="points" fill="{colour}">"#);
            for (x, y) in line.drawn() {
                let _ = write!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2.5"><title>{}: {} at {}</title></circle>"#,
                    sx(x),
                    sy(y),
                    escape(&line.name),
                    format_number(y),
                    format_number(x)
                );
            }
            s.push_str("</g>");
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[(f64, f64)]) -> Vec<Option<(f64, f64)>> {
        v.iter().copied().map(Some).collect()
    }

    #[test]
    fn escapes_everything_that_could_open_markup() {
        assert_eq!(
            escape(r#"<script>alert("x" + 'y')</script> & co"#),
            "&lt;script&gt;alert(&quot;x&quot; + &#39;y&#39;)&lt;/script&gt; &amp; co"
        );
        let plot = Plot {
            id: "a\"b".into(),
            title: "<b>".into(),
            lines: vec![Line::new("</svg><script>", pts(&[(1.0, 1.0)]))],
            ..Plot::default()
        };
        let svg = render(&plot);
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(!svg.contains("<b>"));
        assert!(svg.contains(r#"id="a&quot;b""#));
        assert_eq!(svg.matches("</svg>").count(), 1);
    }

    #[test]
    fn axes_have_round_ticks_covering_the_data() {
        assert_eq!(nice_step(10.0, 5.0), 2.0);
        assert_eq!(nice_step(37.0, 4.0), 10.0);
        assert_eq!(nice_step(0.3, 4.0), 0.1);
        assert_eq!(format_number(2.5), "2.5");
        assert_eq!(format_number(40.0), "40");
        assert_eq!(format_number(0.125), "0.125");
        assert_eq!(format_number(25_000.0), "25k");
        let plot = Plot {
            id: "p".into(),
            title: "t".into(),
            lines: vec![
                Line::new("a", pts(&[(1.0, 3.0), (2.0, 37.0), (3.0, 12.0)])),
                Line::new("b", vec![Some((1.0, 1.0)), None, Some((3.0, 2.0))]),
            ],
            marker: Some((2.5, "ramp end".into())),
            ..Plot::default()
        };
        let svg = render(&plot);
        // y: 0 to 40 by 10; x: 0 to 3 by 0.5.
        let yticks: Vec<&str> = svg
            .split(r#"class="ytick""#)
            .skip(1)
            .filter_map(|t| t.split('>').nth(1)?.split('<').next())
            .collect();
        assert_eq!(yticks, ["0", "10", "20", "30", "40"]);
        assert_eq!(svg.matches(r#"class="xtick""#).count(), 7);
        assert!(svg.contains(r#"data-name="a" data-points="3""#));
        // The gap breaks line b into two pieces.
        assert!(svg.contains(r#"data-name="b" data-points="2" d="M"#));
        let b = svg.split(r#"data-name="b""#).nth(1).expect("b");
        let d = b
            .split("d=\"")
            .nth(1)
            .and_then(|x| x.split('"').next())
            .expect("d");
        assert_eq!(d.matches('M').count(), 2);
        assert_eq!(d.matches('L').count(), 0);
        assert!(svg.contains(r#"class="marker""#));
        assert!(svg.contains("ramp end"));
        assert_eq!(svg.matches("<circle").count(), 5);
        assert!(!svg.contains("no data"));
    }

    #[test]
    fn empty_plots_say_so_and_draw_no_line() {
        for lines in [
            vec![],
            vec![Line::new("a", vec![]), Line::new("b", vec![None])],
        ] {
            let svg = render(&Plot {
                id: "e".into(),
                title: "empty".into(),
                lines,
                ..Plot::default()
            });
            assert!(svg.contains("no data"));
            assert!(!svg.contains("<path"));
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        }
    }
}
