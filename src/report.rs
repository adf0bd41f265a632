//! Events of a run and the reporters that show them.
//!
//! The library never prints: the upgrade engine sends [`Event`]s to a
//! [`Reporter`]. The CLI picks one: progress bars on a terminal
//! ([`ProgressReporter`]), status lines otherwise ([`LineReporter`]), one JSON
//! object per line with `-o json` ([`JsonLinesReporter`]). The event schema is
//! documented in `docs/events.md`.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// How a step or a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    Success,
    /// Stopped by a check or a safety gate; nothing unsafe was done.
    Refused,
    Failed,
    /// Stopped by the operator (Ctrl-C) at a safe point.
    Interrupted,
}

/// One line of the final summary table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSummary {
    pub node: String,
    pub from: Option<String>,
    pub to: String,
    pub duration_ms: u64,
    pub outcome: Outcome,
}

/// A pod a drain is waiting for, and the budget that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockedPod {
    pub namespace: String,
    pub pod: String,
    pub pdb: Option<String>,
    pub disruptions_allowed: Option<i32>,
    pub current_healthy: Option<i32>,
    pub desired_healthy: Option<i32>,
}

/// Everything a run tells the outside world.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum Event {
    #[serde(rename_all = "camelCase")]
    RunStarted {
        current: String,
        target: String,
        resource_group: String,
        dry_run: bool,
    },
    /// The plan as computed before the first step (`steps` counts the expected steps).
    #[serde(rename_all = "camelCase")]
    Plan {
        steps: usize,
        plan: serde_json::Value,
    },
    #[serde(rename_all = "camelCase")]
    StepStarted {
        number: usize,
        estimated_total: usize,
        action: String,
        subject: String,
        reason: String,
    },
    /// Something happening inside a step (cordoned, evicting, deploying …).
    #[serde(rename_all = "camelCase")]
    Progress { subject: String, message: String },
    #[serde(rename_all = "camelCase")]
    Warning { message: String },
    #[serde(rename_all = "camelCase")]
    DrainBlocked { node: String, pods: Vec<BlockedPod> },
    #[serde(rename_all = "camelCase")]
    StepFinished {
        number: usize,
        action: String,
        subject: String,
        duration_ms: u64,
        outcome: Outcome,
    },
    #[serde(rename_all = "camelCase")]
    RunFinished {
        outcome: Outcome,
        duration_ms: u64,
        nodes: Vec<NodeSummary>,
        message: Option<String>,
    },
}

/// Receives the events of a run. Implementations must not block for long.
pub trait Reporter: Send + Sync {
    fn report(&self, event: &Event);
}

/// Drops every event.
#[derive(Debug, Default)]
pub struct QuietReporter;

impl Reporter for QuietReporter {
    fn report(&self, _event: &Event) {}
}

/// Keeps every event (tests, transcripts).
#[derive(Debug, Default)]
pub struct RecordingReporter(Mutex<Vec<Event>>);

impl RecordingReporter {
    pub fn events(&self) -> Vec<Event> {
        self.0
            .lock()
            .map(|events| events.clone())
            .unwrap_or_default()
    }
}

impl Reporter for RecordingReporter {
    fn report(&self, event: &Event) {
        if let Ok(mut events) = self.0.lock() {
            events.push(event.clone());
        }
    }
}

/// One JSON object per line (`-o json`).
pub struct JsonLinesReporter<W: Write + Send> {
    out: Mutex<W>,
}

impl<W: Write + Send> JsonLinesReporter<W> {
    pub fn new(out: W) -> Self {
        Self {
            out: Mutex::new(out),
        }
    }

    pub fn into_inner(self) -> W {
        match self.out.into_inner() {
            Ok(out) => out,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl<W: Write + Send> Reporter for JsonLinesReporter<W> {
    fn report(&self, event: &Event) {
        if let (Ok(mut out), Ok(line)) = (self.out.lock(), serde_json::to_string(event)) {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

/// Cargo-style status lines (`  Replacing k8s-master-…-0 (1/13)`) for logs and
/// terminals without progress bars.
pub struct LineReporter<W: Write + Send> {
    out: Mutex<W>,
}

impl<W: Write + Send> LineReporter<W> {
    pub fn new(out: W) -> Self {
        Self {
            out: Mutex::new(out),
        }
    }

    pub fn into_inner(self) -> W {
        match self.out.into_inner() {
            Ok(out) => out,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// The human text of an event, or `None` for events shown another way.
pub fn human_line(event: &Event) -> Option<String> {
    Some(match event {
        Event::RunStarted {
            current,
            target,
            resource_group,
            dry_run,
        } => format!(
            "{:>12} {resource_group} from {current} to {target}{}",
            "Upgrading",
            if *dry_run {
                " (dry run: nothing will change)"
            } else {
                ""
            }
        ),
        Event::Plan { steps, .. } => format!("{:>12} {steps} steps", "Planned"),
        Event::StepStarted {
            number,
            estimated_total,
            action,
            subject,
            ..
        } => {
            format!(
                "{:>12} {subject} ({number}/{estimated_total}): {action}",
                "Starting"
            )
        }
        Event::Progress { subject, message } if subject.is_empty() => {
            format!("{:>12} {message}", "")
        }
        Event::Progress { subject, message } => format!("{:>12} {subject}: {message}", ""),
        Event::Warning { message } => format!("{:>12} {message}", "warning:"),
        Event::DrainBlocked { node, pods } => {
            let pods: Vec<String> = pods.iter().map(blocked_text).collect();
            format!(
                "{:>12} draining {node} waits for {}",
                "Blocked",
                pods.join("; ")
            )
        }
        Event::StepFinished {
            number,
            action,
            subject,
            duration_ms,
            outcome,
        } => format!(
            "{:>12} {subject} ({number}): {action} in {}",
            match outcome {
                Outcome::Success => "Done",
                Outcome::Refused => "Refused",
                Outcome::Failed => "Failed",
                Outcome::Interrupted => "Stopped",
            },
            format_duration(Duration::from_millis(*duration_ms))
        ),
        Event::RunFinished { .. } => return None,
    })
}

/// The bar's message for a progress event: `subject: message`, or the
/// message alone when the event names no subject.
fn progress_text(subject: &str, message: &str) -> String {
    if subject.is_empty() {
        message.to_owned()
    } else {
        format!("{subject}: {message}")
    }
}

/// `default/web-1 (PDB web: disruptionsAllowed 0, healthy 2/2)`.
pub fn blocked_text(pod: &BlockedPod) -> String {
    match &pod.pdb {
        Some(pdb) => format!(
            "{}/{} (PDB {pdb}: disruptionsAllowed {}, healthy {}/{})",
            pod.namespace,
            pod.pod,
            pod.disruptions_allowed
                .map_or("?".into(), |n| n.to_string()),
            pod.current_healthy.map_or("?".into(), |n| n.to_string()),
            pod.desired_healthy.map_or("?".into(), |n| n.to_string()),
        ),
        None => format!("{}/{}", pod.namespace, pod.pod),
    }
}

impl<W: Write + Send> Reporter for LineReporter<W> {
    fn report(&self, event: &Event) {
        let Ok(mut out) = self.out.lock() else { return };
        if let Some(line) = human_line(event) {
            let _ = writeln!(out, "{line}");
        }
        if let Event::RunFinished { nodes, .. } = event {
            let _ = write!(out, "{}", summary_table(nodes));
        }
        let _ = out.flush();
    }
}

/// The final table: node, old → new, duration, result.
pub fn summary_table(nodes: &[NodeSummary]) -> String {
    if nodes.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.node.clone(),
                format!("{} -> {}", n.from.as_deref().unwrap_or("?"), n.to),
                format_duration(Duration::from_millis(n.duration_ms)),
                format!("{:?}", n.outcome).to_lowercase(),
            ]
        })
        .collect();
    text_table(&["NODE", "VERSION", "TIME", "RESULT"], &rows)
}

/// A plain text table: columns left-aligned and padded to their widest cell,
/// two spaces apart, no trailing spaces.
pub fn text_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c).map(String::len))
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// `1m05s`, `12s`, `850ms`.
pub fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else if secs >= 1 {
        format!("{secs}s")
    } else {
        format!("{}ms", duration.as_millis())
    }
}

/// Progress bars on a terminal: the steps done out of the plan, the current
/// step and node, elapsed time and ETA; status lines above the bar.
pub struct ProgressReporter {
    bar: indicatif::ProgressBar,
}

impl ProgressReporter {
    pub fn new() -> Self {
        let bar = indicatif::ProgressBar::new(0);
        let style = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps (eta {eta}) {wide_msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        Self { bar }
    }
}

impl Default for ProgressReporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter for ProgressReporter {
    fn report(&self, event: &Event) {
        match event {
            Event::Plan { steps, .. } => self.bar.set_length(*steps as u64),
            Event::StepStarted {
                estimated_total,
                action,
                subject,
                ..
            } => {
                self.bar
                    .set_length((*estimated_total).max(self.bar.position() as usize + 1) as u64);
                self.bar.set_message(format!("{action} {subject}"));
            }
            Event::StepFinished { .. } => self.bar.inc(1),
            Event::Progress { subject, message } => {
                self.bar.set_message(progress_text(subject, message))
            }
            Event::RunFinished { nodes, .. } => {
                self.bar.finish_and_clear();
                eprint!("{}", summary_table(nodes));
                return;
            }
            _ => {}
        }
        if let Some(line) = human_line(event).filter(|_| !matches!(event, Event::Progress { .. })) {
            self.bar.println(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished() -> Event {
        Event::RunFinished {
            outcome: Outcome::Success,
            duration_ms: 65_000,
            nodes: vec![NodeSummary {
                node: "k8s-master-38062788-0".into(),
                from: Some("1.33.10".into()),
                to: "1.34.4".into(),
                duration_ms: 65_000,
                outcome: Outcome::Success,
            }],
            message: None,
        }
    }

    #[test]
    fn json_lines_are_one_object_per_event() {
        let reporter = JsonLinesReporter::new(Vec::new());
        reporter.report(&Event::Warning {
            message: "skew".into(),
        });
        reporter.report(&finished());
        let text = String::from_utf8(reporter.into_inner()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "warning");
        assert_eq!(lines[1]["event"], "runFinished");
        assert_eq!(lines[1]["nodes"][0]["durationMs"], 65_000);
        assert_eq!(lines[1]["outcome"], "success");
    }

    #[test]
    fn lines_and_summary_table() {
        let reporter = LineReporter::new(Vec::new());
        reporter.report(&Event::DrainBlocked {
            node: "n1".into(),
            pods: vec![BlockedPod {
                namespace: "default".into(),
                pod: "web-1".into(),
                pdb: Some("web".into()),
                disruptions_allowed: Some(0),
                current_healthy: Some(2),
                desired_healthy: Some(2),
            }],
        });
        reporter.report(&finished());
        let text = String::from_utf8(reporter.into_inner()).unwrap();
        assert_eq!(
            text,
            "     Blocked draining n1 waits for default/web-1 (PDB web: disruptionsAllowed 0, healthy 2/2)\n\
             NODE                   VERSION            TIME   RESULT\n\
             k8s-master-38062788-0  1.33.10 -> 1.34.4  1m05s  success\n"
        );
    }

    #[test]
    fn progress_text_has_no_dangling_colon() {
        assert_eq!(progress_text("", "cordoned n1"), "cordoned n1");
        assert_eq!(
            progress_text("vm-0", "deleting the VM"),
            "vm-0: deleting the VM"
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(format_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(format_duration(Duration::from_secs(12)), "12s");
        assert_eq!(format_duration(Duration::from_secs(3725)), "1h02m");
    }
}
