//! A hand-written SVG of latency percentile curves (no plotting crate): the x axis is the
//! percentile on the usual HDR scale (`log10(1 / (1 - q))`, so 0 %, 90 %, 99 %, 99.9 % are
//! evenly spaced), the y axis is milliseconds, one polyline per series, with a legend.

use std::fmt::Write as _;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 230.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const X_MAX: f64 = 3.0; // 99.9 %
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// Escapes text for an SVG text node or attribute.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Where quantile `q` lies on the x axis, 0 (q = 0) to 3 (q ≥ 99.9 %).
pub fn x_of_quantile(q: f64) -> f64 {
    if !q.is_finite() || q <= 0.0 {
        return 0.0;
    }
    if q >= 0.999 {
        return X_MAX;
    }
    (1.0 / (1.0 - q)).log10().min(X_MAX)
}

/// A round upper bound for the y axis and its tick step: 1, 2 or 5 × 10^k, 4–10 ticks.
pub fn nice_axis(max: f64) -> (f64, f64) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    ((max / step).ceil() * step, step)
}

fn fmt_ms(v: f64) -> String {
    if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The SVG document: `series` are `(label, [(quantile, ms)])` curves.
pub fn percentile_svg(title: &str, series: &[(String, Vec<(f64, f64)>)]) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let y_data_max = series
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let (y_max, y_step) = nice_axis(y_data_max);
    let px = |x: f64| LEFT + x / X_MAX * plot_w;
    let py = |ms: f64| TOP + plot_h - (ms / y_max).clamp(0.0, 1.0) * plot_h;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r##"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="28" font-size="16" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        escape(title)
    );

    // Y grid and labels.
    let mut tick = 0.0;
    while tick <= y_max + y_step / 2.0 {
        let y = py(tick);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#dddddd"/>"##,
            LEFT + plot_w
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y + 4.0,
            fmt_ms(tick)
        );
        tick += y_step;
    }
    // X grid and labels.
    for (x, label) in [
        (0.0, "0%"),
        (x_of_quantile(0.5), "50%"),
        (1.0, "90%"),
        (2.0, "99%"),
        (3.0, "99.9%+"),
    ] {
        let xp = px(x);
        let _ = writeln!(
            s,
            r##"<line x1="{xp:.1}" y1="{TOP}" x2="{xp:.1}" y2="{:.1}" stroke="#dddddd"/>"##,
            TOP + plot_h
        );
        let _ = writeln!(
            s,
            r#"<text x="{xp:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            TOP + plot_h + 18.0
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333333"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0
    );
    let _ = writeln!(
        s,
        r#"<text x="20" y="{:.1}" text-anchor="middle" transform="rotate(-90 20 {:.1})">latency (ms)</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );

    // Curves and legend.
    for (i, (label, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = pts
            .iter()
            .filter(|(q, v)| q.is_finite() && v.is_finite())
            .map(|(q, v)| format!("{:.1},{:.1}", px(x_of_quantile(*q)), py(*v)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"><title>{}</title></polyline>"#,
            points.join(" "),
            escape(label)
        );
        let ly = TOP + 10.0 + 20.0 * i as f64;
        let lx = LEFT + plot_w + 15.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/>"#,
            lx + 20.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 26.0,
            ly + 4.0,
            escape(label)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> Vec<(String, Vec<(f64, f64)>)> {
        vec![
            (
                "W1 run".to_string(),
                vec![(0.0, 1.0), (0.9, 5.0), (0.99, 9.0), (1.0, 12.0)],
            ),
            ("W2 <start> & co".to_string(), vec![(0.0, 2.0), (0.5, 3.0)]),
        ]
    }

    #[test]
    fn writes_a_well_formed_svg_with_one_polyline_per_series() {
        let svg = percentile_svg("latency \"W1\"", &series());
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("</polyline>").count(), 2);
        assert!(svg.contains("latency &quot;W1&quot;"));
        assert!(svg.contains("W2 &lt;start&gt; &amp; co"));
        assert!(!svg.contains("<start>"));
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn empty_and_odd_input_still_draws_axes() {
        let svg = percentile_svg("nothing", &[]);
        assert!(svg.contains("percentile"));
        assert_eq!(svg.matches("<polyline").count(), 0);
        let odd = vec![(
            "odd".to_string(),
            vec![(f64::NAN, 1.0), (0.5, f64::INFINITY), (0.5, 0.0)],
        )];
        let svg = percentile_svg("odd", &odd);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn quantiles_map_to_the_hdr_axis() {
        assert_eq!(x_of_quantile(0.0), 0.0);
        assert!((x_of_quantile(0.9) - 1.0).abs() < 1e-9);
        assert!((x_of_quantile(0.99) - 2.0).abs() < 1e-9);
        assert_eq!(x_of_quantile(1.0), 3.0);
        assert_eq!(x_of_quantile(f64::NAN), 0.0);
    }

    #[test]
    fn axis_bounds_are_round() {
        assert_eq!(nice_axis(12.0), (15.0, 5.0));
        assert_eq!(nice_axis(0.0), (1.0, 0.2));
        assert_eq!(nice_axis(1000.0), (1000.0, 200.0));
        let (max, step) = nice_axis(3.7);
        assert!(max >= 3.7 && step > 0.0);
    }

    #[test]
    fn escaping_drops_control_characters() {
        assert_eq!(escape("a\u{0}b'c"), "ab&apos;c");
    }
}
