//! A study's trials drawn as an SVG file: the metric against the trial
//! number (with the best so far), and against each parameter.

use std::fmt::Write as _;

use mass_protocol::studies::{Domain, ParamValue, StudyRecord, TrialState};

const PANEL_W: f64 = 420.0;
const PANEL_H: f64 = 280.0;
const MARGIN: f64 = 48.0;
const COLUMNS: usize = 2;

/// One panel: points `(x, y, stopped)`, the x axis' labels, a line.
struct Panel {
    title: String,
    points: Vec<(f64, f64, bool)>,
    /// Tick labels at x positions (categories), or `None` for a numeric axis.
    categories: Option<Vec<String>>,
    log_x: bool,
    line: Vec<(f64, f64)>,
}

/// The SVG of a study's finished trials.
pub fn svg(record: &StudyRecord) -> String {
    let metric = record.spec.metric();
    let scored: Vec<(&mass_protocol::studies::Trial, f64)> =
        record.trials.iter().filter_map(|t| Some((t, t.score()?))).collect();
    let mut panels = Vec::new();
    let mut best: Option<f64> = None;
    let mut line = Vec::new();
    for (t, s) in &scored {
        if t.state == TrialState::Completed {
            let better = |b: f64| if metric.maximize() { *s > b } else { *s < b };
            if best.is_none_or(better) {
                best = Some(*s);
            }
        }
        if let Some(b) = best {
            line.push((t.number as f64, b));
        }
    }
    panels.push(Panel {
        title: format!("{} by trial (line: best so far)", metric.name()),
        points: scored.iter().map(|(t, s)| (t.number as f64, *s, t.state == TrialState::Stopped)).collect(),
        categories: None,
        log_x: false,
        line,
    });
    for (name, domain) in &record.spec.space {
        let (categories, log_x) = match domain {
            Domain::Choice(values) => (Some(values.iter().map(ParamValue::text).collect::<Vec<_>>()), false),
            Domain::LogUniform(_) | Domain::LogInt(_) => (None, true),
            _ => (None, false),
        };
        let x_of = |v: &ParamValue| match &categories {
            Some(labels) => labels.iter().position(|l| *l == v.text()).map(|i| i as f64),
            None => v.number(),
        };
        let points = scored
            .iter()
            .filter_map(|(t, s)| Some((x_of(t.params.get(name)?)?, *s, t.state == TrialState::Stopped)))
            .collect();
        panels.push(Panel { title: format!("{} by {name}", metric.name()), points, categories, log_x, line: vec![] });
    }
    let rows = panels.len().div_ceil(COLUMNS);
    let (width, height) = (PANEL_W * COLUMNS as f64, PANEL_H * rows as f64 + 30.0);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"14\">study {} ({}, {} trials; hollow: stopped early)</text>\n",
        record.id.short(),
        escape(&record.spec.name),
        record.trials.len()
    );
    for (i, panel) in panels.iter().enumerate() {
        let (x0, y0) = ((i % COLUMNS) as f64 * PANEL_W, 30.0 + (i / COLUMNS) as f64 * PANEL_H);
        draw(&mut out, panel, x0, y0);
    }
    out.push_str("</svg>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The range of values, widened when empty or flat.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 { (lo - 0.5, hi + 0.5) } else { (lo, hi) }
}

fn draw(out: &mut String, panel: &Panel, x0: f64, y0: f64) {
    let transform = |x: f64| if panel.log_x && x > 0.0 { x.ln() } else { x };
    let (xs, ys): (Vec<f64>, Vec<f64>) = panel.points.iter().map(|(x, y, _)| (transform(*x), *y)).unzip();
    let (x_lo, x_hi) = match &panel.categories {
        Some(labels) => (-0.5, labels.len() as f64 - 0.5),
        None => range(xs.iter().copied()),
    };
    let (y_lo, y_hi) = range(ys.iter().copied().chain(panel.line.iter().map(|p| p.1)));
    let (left, top, w, h) = (x0 + MARGIN, y0 + 24.0, PANEL_W - MARGIN - 16.0, PANEL_H - 24.0 - MARGIN);
    let px = |x: f64| left + (x - x_lo) / (x_hi - x_lo) * w;
    let py = |y: f64| top + h - (y - y_lo) / (y_hi - y_lo) * h;
    let _ = writeln!(out, "<text x=\"{}\" y=\"{}\" font-size=\"12\">{}</text>", left, y0 + 16.0, escape(&panel.title));
    let _ =
        writeln!(out, "<rect x=\"{left}\" y=\"{top}\" width=\"{w}\" height=\"{h}\" fill=\"none\" stroke=\"#999\"/>");
    for (y, anchor) in [(y_lo, "end"), (y_hi, "end")] {
        let _ =
            writeln!(out, "<text x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\">{y:.4}</text>", left - 4.0, py(y) + 4.0);
    }
    match &panel.categories {
        Some(labels) => {
            for (i, label) in labels.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                    px(i as f64),
                    top + h + 14.0,
                    escape(label)
                );
            }
        }
        None => {
            let shown = |x: f64| if panel.log_x { x.exp() } else { x };
            for (x, anchor) in [(x_lo, "start"), (x_hi, "end")] {
                let _ = writeln!(
                    out,
                    "<text x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\">{:.4}</text>",
                    px(x),
                    top + h + 14.0,
                    shown(x)
                );
            }
        }
    }
    if panel.line.len() > 1 {
        let path: Vec<String> = panel.line.iter().map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y))).collect();
        let _ = writeln!(out, "<polyline points=\"{}\" fill=\"none\" stroke=\"#d62728\"/>", path.join(" "));
    }
    for ((x, y), (_, _, stopped)) in xs.iter().zip(&ys).zip(&panel.points) {
        let fill = if *stopped { "none" } else { "#1f77b4" };
        let _ = writeln!(
            out,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{fill}\" stroke=\"#1f77b4\"/>",
            px(*x),
            py(*y)
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use mass_protocol::{
        ContentId,
        jobs::{EnsembleSpec, JobSpec},
        studies::{Metric, RungRun, StudySpec, StudyState, Trial},
    };

    use super::*;

    #[test]
    fn every_scored_trial_is_a_point_in_every_panel() {
        let base = JobSpec {
            model: "m".into(),
            dataset: "d".into(),
            pipeline: Default::default(),
            spec: Default::default(),
            ensemble: EnsembleSpec::Single,
            seed: 0,
            task: None,
            placement: Default::default(),
            trial: None,
            cv: None,
        };
        let space = BTreeMap::from([
            ("learning_rate".to_owned(), Domain::LogUniform([1e-4, 1e-1])),
            ("model".to_owned(), Domain::Choice(vec![ParamValue::Text("linear".into())])),
        ]);
        let trial = |number: usize, score: Option<f64>| Trial {
            number,
            params: BTreeMap::from([
                ("learning_rate".to_owned(), ParamValue::Number(0.01)),
                ("model".to_owned(), ParamValue::Text("linear".into())),
            ]),
            state: if score.is_some() { TrialState::Completed } else { TrialState::Running },
            runs: vec![RungRun { resource: 1, job: ContentId::of(b"j"), score, peer: None }],
        };
        let record = StudyRecord {
            id: ContentId::of(b"s"),
            spec: StudySpec {
                name: "a<b".into(),
                base,
                space,
                strategy: mass_protocol::studies::Strategy::Random,
                asha: None,
                metric: Some(Metric::Accuracy),
                trials: 3,
                parallel: 1,
                seed: 0,
            },
            state: StudyState::Running,
            drivers: vec![],
            trials: vec![trial(0, Some(0.5)), trial(1, Some(0.7)), trial(2, None)],
            best: None,
            test: None,
        };
        let svg = svg(&record);
        assert_eq!(svg.matches("<circle").count(), 2 * 3, "two scored trials in three panels");
        assert!(svg.contains("a&lt;b"), "names are escaped");
        assert!(svg.contains("<polyline"), "the best-so-far line");
    }
}
