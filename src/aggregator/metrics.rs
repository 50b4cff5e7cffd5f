//! The aggregator's Prometheus metrics, served at `GET /metrics` on the query port
//! (text exposition format 0.0.4, behind the same bearer token as queries).
//!
//! - `crigate_decisions_total{decision,namespace}`: decisions stored, each once.
//! - `crigate_aggregator_records_total{result}`: records received, `stored` or
//!   `duplicate` (redelivered after a lost acknowledgment).
//! - `crigate_aggregator_batches_refused_total{reason}`: `node_mismatch`, `invalid`,
//!   `storage`.
//! - `crigate_aggregator_node_last_seen_timestamp_seconds{node}`: last batch per node.
//! - `crigate_spool_dropped_records_total{node}` and `crigate_spool_depth_bytes{node}`:
//!   each node's spool, as its last batch reported it (the drop count restarts with the
//!   node daemon).
//!
//! Label values come from nodes, so each family holds at most [`MAX_SERIES`] series;
//! past that, new label values count under `_other` (the exposition and the bound are
//! [`crate::metrics`], shared with the node daemon).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use crate::audit::AuditRecord;
pub use crate::metrics::MAX_SERIES;
use crate::metrics::OVERFLOW;
use crate::metrics::{self as exposition, escape, family, DecisionCounts, Kind};

/// Why a batch was refused, as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    NodeMismatch,
    Invalid,
    Storage,
}

/// The aggregator's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    decisions: DecisionCounts,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    stored: u64,
    duplicate: u64,
    refused: BTreeMap<Refusal, u64>,
    last_seen: BTreeMap<String, NodeState>,
}

#[derive(Debug, Default)]
struct NodeState {
    seen: f64,
    spool_dropped: u64,
    spool_depth: u64,
}

/// What a node reported of its spool with a batch.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpoolReport {
    pub dropped_records: u64,
    pub depth_bytes: u64,
}

// === impl Refusal ===

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::NodeMismatch => "node_mismatch",
            Refusal::Invalid => "invalid",
            Refusal::Storage => "storage",
        }
    }
}

// === impl Metrics ===

impl Metrics {
    /// Counts a stored batch from `node`; `new[i]` says whether `records[i]` was stored
    /// now rather than by an earlier delivery.
    pub fn batch_stored(
        &self,
        node: &str,
        records: &[AuditRecord],
        new: &[bool],
        spool: SpoolReport,
    ) {
        let now = crate::audit::now_unix_nanos() as f64 / 1e9;
        let mut state = self.lock();
        for (record, new) in records.iter().zip(new) {
            if !*new {
                state.duplicate += 1;
                continue;
            }
            state.stored += 1;
            self.decisions.add(record.decision(), &record.namespace);
        }
        let node = if state.last_seen.contains_key(node) || state.last_seen.len() < MAX_SERIES {
            node.to_owned()
        } else {
            OVERFLOW.to_owned()
        };
        state.last_seen.insert(
            node,
            NodeState {
                seen: now,
                spool_dropped: spool.dropped_records,
                spool_depth: spool.depth_bytes,
            },
        );
    }

    /// Counts a refused batch.
    pub fn refused(&self, reason: Refusal) {
        *self.lock().refused.entry(reason).or_default() += 1;
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        exposition::build_info(&mut out);
        self.decisions
            .render(&mut out, "Decisions stored, by decision and namespace.");
        let state = self.lock();
        family(
            &mut out,
            "crigate_aggregator_records_total",
            Kind::Counter,
            "Records received, stored now or already stored.",
        );
        let _ = writeln!(
            out,
            "crigate_aggregator_records_total{{result=\"stored\"}} {}",
            state.stored
        );
        let _ = writeln!(
            out,
            "crigate_aggregator_records_total{{result=\"duplicate\"}} {}",
            state.duplicate
        );
        family(
            &mut out,
            "crigate_aggregator_batches_refused_total",
            Kind::Counter,
            "Batches refused, by reason.",
        );
        for reason in [Refusal::NodeMismatch, Refusal::Invalid, Refusal::Storage] {
            let _ = writeln!(
                out,
                "crigate_aggregator_batches_refused_total{{reason=\"{}\"}} {}",
                reason.code(),
                state.refused.get(&reason).copied().unwrap_or(0)
            );
        }
        family(
            &mut out,
            "crigate_aggregator_node_last_seen_timestamp_seconds",
            Kind::Gauge,
            "When each node's last batch was stored.",
        );
        for (node, node_state) in &state.last_seen {
            let _ = writeln!(
                out,
                "crigate_aggregator_node_last_seen_timestamp_seconds{{node=\"{}\"}} {:.3}",
                escape(node),
                node_state.seen
            );
        }
        family(
            &mut out,
            "crigate_spool_dropped_records_total",
            Kind::Counter,
            "Unshipped records a node's spool dropped to stay within its bound, as last reported.",
        );
        for (node, node_state) in &state.last_seen {
            let _ = writeln!(
                out,
                "crigate_spool_dropped_records_total{{node=\"{}\"}} {}",
                escape(node),
                node_state.spool_dropped
            );
        }
        family(
            &mut out,
            "crigate_spool_depth_bytes",
            Kind::Gauge,
            "Bytes in a node's spool, as last reported.",
        );
        for (node, node_state) in &state.last_seen {
            let _ = writeln!(
                out,
                "crigate_spool_depth_bytes{{node=\"{}\"}} {}",
                escape(node),
                node_state.spool_depth
            );
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Counters stay meaningful after a panic elsewhere.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::DecisionKind;

    fn record(namespace: &str, decision: DecisionKind) -> AuditRecord {
        let mut r = AuditRecord {
            namespace: namespace.to_owned(),
            ..Default::default()
        };
        r.set_decision(decision);
        r
    }

    #[test]
    fn duplicates_are_not_counted_as_decisions_and_labels_are_escaped() {
        let metrics = Metrics::default();
        let records = [
            record("prod", DecisionKind::Deny),
            record("prod", DecisionKind::Deny),
            record("evil\"\n", DecisionKind::Allow),
        ];
        metrics.batch_stored(
            "node-1",
            &records,
            &[true, false, true],
            SpoolReport {
                dropped_records: 7,
                depth_bytes: 4096,
            },
        );
        metrics.refused(Refusal::NodeMismatch);
        let text = metrics.render();
        assert!(text.contains("crigate_decisions_total{decision=\"deny\",namespace=\"prod\"} 1"));
        assert!(text.contains("namespace=\"evil\\\"\\n\"} 1"));
        assert!(text.contains("crigate_aggregator_records_total{result=\"duplicate\"} 1"));
        assert!(text.contains("reason=\"node_mismatch\"} 1"));
        assert!(text.contains("node_last_seen_timestamp_seconds{node=\"node-1\"}"));
        assert!(text.contains("crigate_spool_dropped_records_total{node=\"node-1\"} 7"));
        assert!(text.contains("crigate_spool_depth_bytes{node=\"node-1\"} 4096"));
    }

    #[test]
    fn series_are_bounded() {
        let metrics = Metrics::default();
        for n in 0..MAX_SERIES + 5 {
            metrics.batch_stored(
                "node-1",
                &[record(&format!("ns-{n}"), DecisionKind::Allow)],
                &[true],
                SpoolReport::default(),
            );
        }
        assert_eq!(metrics.decisions.series(), MAX_SERIES + 1);
        assert_eq!(metrics.decisions.count(DecisionKind::Allow, OVERFLOW), 5);
    }
}
