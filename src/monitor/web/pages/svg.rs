//! The job page's charts (size and duration over time) as inline SVG, drawn here on the
//! server: no script, no external asset, nothing the isolated network could lack.
//!
//! The input is the history's, so the drawing expects anything: no point, one point, points
//! at the same time, missing values (a gap in the line), values in the exabytes or 1e300
//! seconds, NaN and infinities (left out). Every number written is finite, every text escaped.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 190.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 18.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 34.0;

/// One point of a series: when, and the value if the occurrence had one.
pub type Point = (DateTime<Utc>, Option<f64>);

/// A line chart of `points` (any order) titled `title`, its values labelled by `label`
/// (`"1.5 GiB"`, `"4.1 s"`), the value axis's marks round numbers of `unit` (1024² for sizes
/// shown in MiB, 60 for durations in minutes). `id` makes the element ids unique within the
/// page.
pub fn line_chart(
    id: &str,
    title: &str,
    points: &[Point],
    unit: f64,
    label: impl Fn(f64) -> String,
) -> String {
    let mut pts: Vec<(i64, Option<f64>)> = points
        .iter()
        .map(|(t, v)| (t.timestamp(), v.filter(|v| v.is_finite())))
        .collect();
    pts.sort_by_key(|(t, _)| *t);
    let values: Vec<f64> = pts.iter().filter_map(|(_, v)| *v).collect();
    let id = escape(id);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" role=\"img\" aria-labelledby=\"{id}-title {id}-desc\">\
         <title id=\"{id}-title\">{t}</title>",
        w = num(WIDTH),
        h = num(HEIGHT),
        t = escape(title),
    );
    let desc = match values.len() {
        0 => "no value recorded".to_string(),
        n => format!(
            "{n} value(s) from {} to {}",
            label(values.iter().copied().fold(f64::INFINITY, f64::min)),
            label(values.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
        ),
    };
    let _ = write!(s, "<desc id=\"{id}-desc\">{}</desc>", escape(&desc));
    // The frame: the axes.
    let (x0, x1, y0, y1) = (LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP);
    let _ = write!(
        s,
        "<path class=\"axis\" d=\"M{} {} V{} H{}\" fill=\"none\" stroke=\"#666\"/>",
        num(x0),
        num(y1),
        num(y0),
        num(x1)
    );
    if values.is_empty() {
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"none\">no value recorded</text></svg>",
            num((x0 + x1) / 2.0),
            num((y0 + y1) / 2.0)
        );
        return s;
    }
    // The value axis starts at zero (sizes and durations), or lower if something is negative.
    let lo = values.iter().copied().fold(0.0, f64::min);
    let hi = values.iter().copied().fold(0.0, f64::max);
    let unit = if unit.is_finite() && unit > 0.0 {
        unit
    } else {
        1.0
    };
    let mut ticks: Vec<f64> = nice_ticks(lo / unit, hi / unit)
        .into_iter()
        .map(|t| t * unit)
        .collect();
    if ticks.iter().any(|t| !t.is_finite()) || ticks.len() < 2 {
        ticks = nice_ticks(lo, hi);
    }
    let (vlo, vhi) = (ticks[0], ticks[ticks.len() - 1]);
    let y_of = |v: f64| -> f64 {
        let f = (v - vlo) / (vhi - vlo);
        let f = if f.is_finite() {
            f.clamp(0.0, 1.0)
        } else {
            0.0
        };
        y0 - f * (y0 - y1)
    };
    for v in &ticks {
        let y = y_of(*v);
        let _ = write!(
            s,
            "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#ddd\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"tick\">{}</text>",
            num(x0),
            num(x1),
            num(x0 - 6.0),
            num(y + 4.0),
            escape(&label(*v)),
            y = num(y),
        );
    }
    // The time axis: from the first to the last point; a single instant sits in the middle.
    let (t_first, t_last) = (pts[0].0, pts[pts.len() - 1].0);
    let x_of = |t: i64| -> f64 {
        if t_last == t_first {
            return (x0 + x1) / 2.0;
        }
        let f = (t - t_first) as f64 / (t_last - t_first) as f64;
        let f = if f.is_finite() {
            f.clamp(0.0, 1.0)
        } else {
            0.0
        };
        x0 + f * (x1 - x0)
    };
    let fmt = if t_last - t_first >= 2 * 86_400 {
        "%Y-%m-%d"
    } else {
        "%m-%d %H:%M"
    };
    let time_label = |t: i64| {
        DateTime::<Utc>::from_timestamp(t, 0)
            .map(|d| d.format(fmt).to_string())
            .unwrap_or_default()
    };
    let mut marks = vec![(t_first, "start")];
    if t_last != t_first {
        marks.push((t_last, "end"));
    } else {
        marks[0].1 = "middle";
    }
    for (t, anchor) in marks {
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\" class=\"tick\">{}</text>",
            num(x_of(t)),
            num(y0 + 18.0),
            escape(&time_label(t))
        );
    }
    // The line, broken where a value is missing, and a dot on every value.
    let mut run: Vec<String> = Vec::new();
    let mut lines = Vec::new();
    for (t, v) in &pts {
        match v {
            Some(v) => run.push(format!("{},{}", num(x_of(*t)), num(y_of(*v)))),
            None => lines.push(std::mem::take(&mut run)),
        }
    }
    lines.push(run);
    for l in lines.iter().filter(|l| l.len() > 1) {
        let _ = write!(
            s,
            "<polyline class=\"line\" fill=\"none\" stroke=\"#1f5fa8\" stroke-width=\"2\" points=\"{}\"/>",
            l.join(" ")
        );
    }
    for (t, v) in &pts {
        if let Some(v) = v {
            let _ = write!(
                s,
                "<circle cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"#1f5fa8\"><title>{}: {}</title></circle>",
                num(x_of(*t)),
                num(y_of(*v)),
                escape(&time_label_full(*t)),
                escape(&label(*v))
            );
        }
    }
    s.push_str("</svg>");
    s
}

fn time_label_full(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// Three to six round values (1, 2 or 5 times a power of ten apart) covering `lo..=hi`;
/// `[lo, hi]` itself when no round step fits (values near f64's limits).
fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo, lo + 1.0) };
    let span = hi - lo;
    if !span.is_finite() {
        return vec![lo, hi];
    }
    let raw = span / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    if !step.is_finite() || step <= 0.0 {
        return vec![lo, hi];
    }
    let start = (lo / step).floor() * step;
    let mut out = Vec::new();
    let mut v = start;
    while out.len() < 8 {
        out.push(v);
        if v >= hi {
            break;
        }
        v = start + step * out.len() as f64;
    }
    if out.iter().any(|v| !v.is_finite()) || out.len() < 2 {
        return vec![lo, hi];
    }
    out
}

/// A coordinate: finite, two decimals at most.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return "0".into();
    }
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// Text for SVG (XML) content and attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_796_522_400 + h * 3600, 0).unwrap()
    }

    fn plain(v: f64) -> String {
        format!("{v}")
    }

    /// Every number in the drawing is finite, and the markup is balanced enough to parse.
    fn sane(svg: &str) {
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
        for bad in ["NaN", "inf", "e+", "<script"] {
            assert!(!svg.contains(bad), "{bad} in {svg}");
        }
        assert_eq!(svg.matches("<svg").count(), svg.matches("</svg>").count());
    }

    #[test]
    fn no_point_says_so() {
        let s = line_chart("c", "Size", &[], 1.0, plain);
        sane(&s);
        assert!(s.contains("no value recorded"));
        assert!(!s.contains("<polyline"));
    }

    #[test]
    fn one_point_is_a_dot_in_the_middle() {
        let s = line_chart("c", "Size", &[(at(0), Some(42.0))], 1.0, plain);
        sane(&s);
        assert!(!s.contains("<polyline"), "{s}");
        assert_eq!(s.matches("<circle").count(), 1);
        assert!(s.contains(&format!("cx=\"{}\"", num((LEFT + WIDTH - RIGHT) / 2.0))));
    }

    #[test]
    fn only_missing_values_are_no_value() {
        let s = line_chart(
            "c",
            "Size",
            &[
                (at(0), None),
                (at(1), Some(f64::NAN)),
                (at(2), Some(f64::INFINITY)),
            ],
            1.0,
            plain,
        );
        sane(&s);
        assert!(s.contains("no value recorded"));
    }

    #[test]
    fn a_missing_value_breaks_the_line() {
        let pts = [
            (at(3), Some(3.0)),
            (at(0), Some(1.0)),
            (at(1), Some(2.0)),
            (at(2), None),
            (at(4), Some(4.0)),
        ];
        let s = line_chart("c", "Size", &pts, 1.0, plain);
        sane(&s);
        assert_eq!(s.matches("<polyline").count(), 2, "{s}");
        assert_eq!(s.matches("<circle").count(), 4);
        // Sorted by time: the first segment climbs from 1 to 2.
        let first = s.split("points=\"").nth(1).unwrap();
        let ys: Vec<f64> = first
            .split('"')
            .next()
            .unwrap()
            .split(' ')
            .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        assert!(ys[0] > ys[1], "{ys:?}");
    }

    #[test]
    fn huge_and_equal_values_stay_finite() {
        for pts in [
            vec![(at(0), Some(f64::MAX)), (at(1), Some(f64::MAX / 2.0))],
            vec![(at(0), Some(-f64::MAX)), (at(1), Some(f64::MAX))],
            vec![(at(0), Some(u64::MAX as f64)), (at(0), Some(0.0))],
            vec![(at(0), Some(0.0)), (at(5), Some(0.0))],
            vec![(at(0), Some(1e-300)), (at(5), Some(2e-300))],
        ] {
            for unit in [1.0, 1024.0, 0.0, f64::NAN, f64::MAX] {
                sane(&line_chart("c", "Size", &pts, unit, |v| format!("{v:.1}")));
            }
        }
    }

    #[test]
    fn text_is_escaped() {
        let s = line_chart("c\"<", "<b>&", &[(at(0), Some(1.0))], 1.0, |_| "<x>".into());
        sane(&s);
        assert!(s.contains("&lt;b&gt;&amp;"));
        assert!(s.contains("c&quot;&lt;-title"));
        assert!(!s.contains("<x>") && !s.contains("<b>"));
    }

    #[test]
    fn marks_are_round_in_the_unit() {
        let kib = |v: f64| format!("{} KiB", v / 1024.0);
        let s = line_chart(
            "c",
            "Size",
            &[(at(0), Some(300_000.0)), (at(1), Some(250_000.0))],
            1024.0,
            kib,
        );
        for mark in ["0 KiB", "100 KiB", "200 KiB", "300 KiB"] {
            assert!(s.contains(&format!(">{mark}</text>")), "{mark}: {s}");
        }
    }

    #[test]
    fn ticks_are_round_and_cover_the_values() {
        assert_eq!(nice_ticks(0.0, 10.0), vec![0.0, 5.0, 10.0]);
        let t = nice_ticks(0.0, 7.3);
        assert_eq!(t, vec![0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(nice_ticks(0.0, 0.0), vec![0.0, 0.5, 1.0]);
        assert_eq!(nice_ticks(-f64::MAX, f64::MAX), vec![-f64::MAX, f64::MAX]);
    }
}
