//! The node daemon's Prometheus metrics, served at `GET /metrics` on `[metrics] listen`
//! (plain HTTP; loopback unless configured otherwise).
//!
//! - `crigate_decisions_total{decision,namespace}`: decisions made, counted from the
//!   audit record of each (so exactly the decisions journald and the aggregator see).
//! - `crigate_decision_duration_seconds{phase}`: time to decide, registry round trips
//!   and verification included (the record's `latency_micros`), `pull` or `create`.
//! - `crigate_verdict_cache_requests_total{result="hit"|"miss"}`: verdict cache lookups.
//! - `crigate_revocation_requests_total{source="crl"|"ocsp",result="cached"|"fetched"|"error"}`:
//!   revocation information for Notation signing certificates, taken from memory,
//!   fetched, or not obtained (an unreachable responder or distribution point).
//! - `crigate_spool_depth_bytes`, `crigate_spool_dropped_records_total`: the spool, when
//!   an aggregator is configured.
//! - `crigate_audit_write_failures_total{sink}`: records a sink (`journald`, `spool`)
//!   could not take, or did not make durable within [`super::DURABLE_WAIT`].
//! - `crigate_config_reloads_total{result="applied"|"refused"}`,
//!   `crigate_config_last_reload_successful`,
//!   `crigate_config_last_reload_success_timestamp_seconds`: reloads of the configuration
//!   file (a refused one keeps the running configuration).
//! - `crigate_build_info{version,git_sha}`.
//!
//! Counting happens on the decision path, in [`super::Auditor::record`]: atomics, and
//! one short lock for the namespace counters.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::spool::Spool;
use super::{AuditRecord, Phase};
use crate::metrics::{self as exposition, family, DecisionCounts, Histogram, Kind};
use crate::proxy::server::ReloadStats;
use crate::verify::cache::CacheStats;
use crate::verify::notation::fetch::RevocationStats;

/// The node daemon's counters. One per daemon, shared by every decider across reloads.
#[derive(Debug)]
pub struct NodeMetrics {
    decisions: DecisionCounts,
    /// Per phase: pull, create.
    durations: [Histogram; 2],
    cache: Arc<CacheStats>,
    revocation: Arc<RevocationStats>,
    reloads: Arc<ReloadStats>,
    /// Per sink, in the auditor's order: its name and failed writes.
    sink_failures: Box<[(&'static str, AtomicU64)]>,
    spool: OnceLock<Spool>,
}

// === impl NodeMetrics ===

impl NodeMetrics {
    /// Counters for an auditor writing to the sinks named `sinks`, in its order.
    pub fn new(sinks: &[&'static str]) -> Self {
        Self {
            decisions: DecisionCounts::default(),
            durations: Default::default(),
            cache: Arc::default(),
            revocation: Arc::default(),
            reloads: Arc::default(),
            sink_failures: sinks
                .iter()
                .map(|name| (*name, AtomicU64::new(0)))
                .collect(),
            spool: OnceLock::new(),
        }
    }

    /// The verdict cache counters, for each cache the daemon builds.
    pub fn cache_stats(&self) -> Arc<CacheStats> {
        Arc::clone(&self.cache)
    }

    /// The revocation fetch counters, for each verification engine the daemon builds.
    pub fn revocation_stats(&self) -> Arc<RevocationStats> {
        Arc::clone(&self.revocation)
    }

    /// The configuration reload counters, for the daemon's accept loop.
    pub fn reload_stats(&self) -> Arc<ReloadStats> {
        Arc::clone(&self.reloads)
    }

    /// Reports `spool`'s depth and drops from now on. Only the first spool given counts.
    pub fn watch_spool(&self, spool: Spool) {
        let _ = self.spool.set(spool);
    }

    /// Counts the decision `record` describes.
    pub fn decided(&self, record: &AuditRecord) {
        self.decisions.add(record.decision(), &record.namespace);
        let phase = match record.phase() {
            Phase::Pull => Some(0),
            Phase::Create => Some(1),
            Phase::Unspecified => None,
        };
        if let Some(histogram) = phase.and_then(|at| self.durations.get(at)) {
            histogram.observe(Duration::from_micros(record.latency_micros));
        }
    }

    /// Counts a failed write to the sink at `index` in the auditor's order.
    pub fn sink_failed(&self, index: usize) {
        if let Some((_, failures)) = self.sink_failures.get(index) {
            failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Decisions of `phase` timed so far.
    pub fn timed(&self, phase: Phase) -> u64 {
        match phase {
            Phase::Pull => self.durations[0].count(),
            Phase::Create => self.durations[1].count(),
            Phase::Unspecified => 0,
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        exposition::build_info(&mut out);
        self.decisions
            .render(&mut out, "Decisions made, by decision and namespace.");
        family(
            &mut out,
            "crigate_decision_duration_seconds",
            Kind::Histogram,
            "Time to decide, verification included, by phase.",
        );
        for (phase, histogram) in [Phase::Pull, Phase::Create].iter().zip(&self.durations) {
            histogram.render(
                &mut out,
                "crigate_decision_duration_seconds",
                &format!("phase=\"{}\"", phase.code()),
            );
        }
        family(
            &mut out,
            "crigate_verdict_cache_requests_total",
            Kind::Counter,
            "Verdict cache lookups, answered from the cache (hit) or by verifying (miss).",
        );
        let _ = writeln!(
            out,
            "crigate_verdict_cache_requests_total{{result=\"hit\"}} {}",
            self.cache.hits()
        );
        let _ = writeln!(
            out,
            "crigate_verdict_cache_requests_total{{result=\"miss\"}} {}",
            self.cache.misses()
        );
        family(
            &mut out,
            "crigate_revocation_requests_total",
            Kind::Counter,
            "Revocation information for Notation signing certificates, by source and result.",
        );
        for (source, result, count) in self.revocation.counts() {
            let _ = writeln!(
                out,
                "crigate_revocation_requests_total{{source=\"{source}\",result=\"{result}\"}} {count}"
            );
        }
        if let Some(spool) = self.spool.get() {
            family(
                &mut out,
                "crigate_spool_depth_bytes",
                Kind::Gauge,
                "Bytes of records in the spool, shipped or not.",
            );
            let _ = writeln!(out, "crigate_spool_depth_bytes {}", spool.depth_bytes());
            family(
                &mut out,
                "crigate_spool_dropped_records_total",
                Kind::Counter,
                "Unshipped records the spool dropped to stay within its bound.",
            );
            let _ = writeln!(
                out,
                "crigate_spool_dropped_records_total {}",
                spool.dropped_records()
            );
        }
        family(
            &mut out,
            "crigate_audit_write_failures_total",
            Kind::Counter,
            "Audit records a sink could not take, by sink.",
        );
        for (sink, failures) in self.sink_failures.iter() {
            let _ = writeln!(
                out,
                "crigate_audit_write_failures_total{{sink=\"{sink}\"}} {}",
                failures.load(Ordering::Relaxed)
            );
        }
        let (applied, refused) = self.reloads.counts();
        family(
            &mut out,
            "crigate_config_reloads_total",
            Kind::Counter,
            "Reloads of the configuration file, applied or refused (the running one kept).",
        );
        let _ = writeln!(
            out,
            "crigate_config_reloads_total{{result=\"applied\"}} {applied}"
        );
        let _ = writeln!(
            out,
            "crigate_config_reloads_total{{result=\"refused\"}} {refused}"
        );
        family(
            &mut out,
            "crigate_config_last_reload_successful",
            Kind::Gauge,
            "Whether the last reload of the configuration file was applied (1 before any).",
        );
        let _ = writeln!(
            out,
            "crigate_config_last_reload_successful {}",
            u8::from(self.reloads.last_successful())
        );
        family(
            &mut out,
            "crigate_config_last_reload_success_timestamp_seconds",
            Kind::Gauge,
            "When the running configuration was loaded, at start or by a reload.",
        );
        let _ = writeln!(
            out,
            "crigate_config_last_reload_success_timestamp_seconds {}",
            self.reloads.loaded_at()
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::DecisionKind;

    fn record(namespace: &str, decision: DecisionKind, phase: Phase, micros: u64) -> AuditRecord {
        let mut record = AuditRecord {
            namespace: namespace.to_owned(),
            latency_micros: micros,
            ..Default::default()
        };
        record.set_decision(decision);
        record.set_phase(phase);
        record
    }

    #[test]
    fn decisions_durations_and_failures_are_rendered() {
        let metrics = NodeMetrics::new(&["journald", "spool"]);
        metrics.decided(&record("prod", DecisionKind::Deny, Phase::Pull, 1_200));
        metrics.decided(&record("prod", DecisionKind::Allow, Phase::Create, 300));
        metrics.decided(&record("dev", DecisionKind::Allow, Phase::Pull, 40));
        metrics.sink_failed(0);
        metrics.sink_failed(7);
        let text = metrics.render();
        for line in [
            "crigate_decisions_total{decision=\"deny\",namespace=\"prod\"} 1\n",
            "crigate_decisions_total{decision=\"allow\",namespace=\"dev\"} 1\n",
            "crigate_decision_duration_seconds_count{phase=\"pull\"} 2\n",
            "crigate_decision_duration_seconds_bucket{phase=\"pull\",le=\"0.0005\"} 1\n",
            "crigate_decision_duration_seconds_bucket{phase=\"pull\",le=\"0.0025\"} 2\n",
            "crigate_decision_duration_seconds_count{phase=\"create\"} 1\n",
            "crigate_verdict_cache_requests_total{result=\"miss\"} 0\n",
            "crigate_audit_write_failures_total{sink=\"journald\"} 1\n",
            "crigate_audit_write_failures_total{sink=\"spool\"} 0\n",
            "crigate_revocation_requests_total{source=\"ocsp\",result=\"error\"} 0\n",
            "crigate_config_reloads_total{result=\"refused\"} 0\n",
            "crigate_config_last_reload_successful 1\n",
            "crigate_build_info{",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        // No spool configured: no spool series.
        assert!(!text.contains("crigate_spool_depth_bytes"), "{text}");
        assert_eq!(metrics.timed(Phase::Pull), 2);
    }
}
