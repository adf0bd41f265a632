//! The request log of the ARM listener: every request with its status and
//! latency, and per-endpoint counts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// One request as served.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub seq: u64,
    /// Virtual time when the request arrived.
    pub time: String,
    pub method: String,
    pub path: String,
    pub query: String,
    /// The endpoint template (`GET …/virtualMachines/{vmName}`).
    pub endpoint: String,
    pub status: u16,
    /// Real latency in milliseconds.
    pub latency_ms: f64,
    pub request_id: String,
}

const KEEP: usize = 100_000;

/// The log. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct RequestLog {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    records: Vec<RequestRecord>,
    counts: BTreeMap<String, u64>,
}

impl RequestLog {
    pub fn record(&self, mut record: RequestRecord) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.next += 1;
        record.seq = inner.next;
        *inner.counts.entry(record.endpoint.clone()).or_default() += 1;
        if inner.records.len() >= KEEP {
            inner.records.drain(..KEEP / 10);
        }
        inner.records.push(record);
    }

    /// All records kept (the last 100,000 at most), oldest first.
    pub fn records(&self) -> Vec<RequestRecord> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .records
            .clone()
    }

    /// Requests per endpoint template (`METHOD /path/{param}`), since start.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .counts
            .clone()
    }

    /// How many requests hit `endpoint` (exact template).
    pub fn count(&self, endpoint: &str) -> u64 {
        self.counts().get(endpoint).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).next
    }
}
