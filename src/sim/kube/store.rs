//! The object store: every object as JSON, one global resourceVersion, a
//! bounded log of changes for watches.

use std::collections::{BTreeMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::resources::Resource;

/// How many changes are kept for watches that resume from a resourceVersion.
const LOG_CAPACITY: usize = 5_000;

/// An error answered as a Kubernetes `Status`.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn not_found(resource: &Resource, name: &str) -> Self {
        let qualified = resource.qualified_plural();
        Self::new(404, "NotFound", format!("{qualified} \"{name}\" not found"))
            .with_details(json!({"name": name, "group": resource.group, "kind": resource.plural}))
    }

    pub fn already_exists(resource: &Resource, name: &str) -> Self {
        let qualified = resource.qualified_plural();
        Self::new(
            409,
            "AlreadyExists",
            format!("{qualified} \"{name}\" already exists"),
        )
        .with_details(json!({"name": name, "group": resource.group, "kind": resource.plural}))
    }

    pub fn conflict(resource: &Resource, name: &str) -> Self {
        let qualified = resource.qualified_plural();
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {qualified} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        )
        .with_details(json!({"name": name, "group": resource.group, "kind": resource.plural}))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn invalid(resource: &Resource, name: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {message}", resource.kind),
        )
        .with_details(
            json!({"name": name, "group": resource.group, "kind": resource.kind,
                             "causes": [{"reason": "FieldValueInvalid", "message": message}]}),
        )
    }

    pub fn method_not_allowed(verb: &str, resource: &Resource) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({verb} {})",
                resource.qualified_plural()
            ),
        )
    }

    /// The `Status` body.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status["code"] = json!(self.code);
        status
    }
}

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    Modified,
    Deleted,
}

/// One entry of the change log.
#[derive(Clone, Debug)]
pub struct LogEntry {
    pub rv: u64,
    pub resource: &'static str,
    pub change: Change,
    pub object: Value,
    pub previous: Option<Value>,
}

type Key = (String, String);

/// All objects, by resource id (`Resource::id`) then (namespace, name).
#[derive(Debug)]
pub struct Store {
    rv: u64,
    uid_counter: u64,
    objects: BTreeMap<&'static str, BTreeMap<Key, Value>>,
    log: VecDeque<LogEntry>,
    /// The oldest resourceVersion a watch may resume from.
    oldest: u64,
    notify: tokio::sync::watch::Sender<u64>,
}

impl Store {
    pub fn new() -> Self {
        let (notify, _) = tokio::sync::watch::channel(1);
        Self {
            rv: 1,
            uid_counter: 0,
            objects: BTreeMap::new(),
            log: VecDeque::new(),
            oldest: 1,
            notify,
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.notify.subscribe()
    }

    /// A fresh, deterministic uid.
    pub fn next_uid(&mut self) -> String {
        self.uid_counter += 1;
        format!("5e1a0000-0000-4000-8000-{:012x}", self.uid_counter)
    }

    pub fn get(&self, resource: &Resource, namespace: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(resource.id())
            .and_then(|m| m.get(&(namespace.to_string(), name.to_string())))
    }

    /// Objects of a resource, in (namespace, name) order; `namespace` None means all.
    pub fn list(&self, resource: &Resource, namespace: Option<&str>) -> Vec<&Value> {
        self.objects
            .get(resource.id())
            .map(|m| {
                m.iter()
                    .filter(|((ns, _), _)| namespace.is_none_or(|want| want == ns))
                    .map(|(_, v)| v)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stores a new object; fills uid, creationTimestamp, resourceVersion, generation.
    pub fn create(
        &mut self,
        resource: &Resource,
        mut object: Value,
        now: SystemTime,
    ) -> Result<Value, ApiError> {
        let (namespace, name) = key_of(&object);
        if name.is_empty() {
            return Err(ApiError::invalid(
                resource,
                "",
                "metadata.name: Required value: name or generateName is required",
            ));
        }
        if self.get(resource, &namespace, &name).is_some() {
            return Err(ApiError::already_exists(resource, &name));
        }
        let uid = self.next_uid();
        self.rv += 1;
        let meta = metadata_mut(&mut object);
        meta.insert("uid".into(), json!(uid));
        meta.insert("creationTimestamp".into(), json!(format_time(now)));
        meta.insert("resourceVersion".into(), json!(self.rv.to_string()));
        meta.insert("generation".into(), json!(1));
        if let Some(m) = object.as_object_mut() {
            m.insert("kind".into(), json!(resource.kind));
            m.insert("apiVersion".into(), json!(resource.api_version()));
        }
        self.objects
            .entry(resource.id())
            .or_default()
            .insert((namespace, name), object.clone());
        self.record(resource, Change::Added, object.clone(), None);
        Ok(object)
    }

    /// Replaces an existing object (no precondition check; see `update`).
    /// Bumps generation when the spec changed. Returns the stored object; an
    /// identical object is stored without a new resourceVersion.
    pub fn replace(&mut self, resource: &Resource, mut object: Value) -> Result<Value, ApiError> {
        let (namespace, name) = key_of(&object);
        let Some(old) = self.get(resource, &namespace, &name).cloned() else {
            return Err(ApiError::not_found(resource, &name));
        };
        // Immutable metadata comes from the stored object.
        for field in ["uid", "creationTimestamp", "resourceVersion", "generation"] {
            match old.pointer(&format!("/metadata/{field}")) {
                Some(v) => {
                    metadata_mut(&mut object).insert(field.into(), v.clone());
                }
                None => {
                    metadata_mut(&mut object).remove(field);
                }
            }
        }
        if let Some(m) = object.as_object_mut() {
            m.insert("kind".into(), json!(resource.kind));
            m.insert("apiVersion".into(), json!(resource.api_version()));
        }
        if object == old {
            return Ok(old);
        }
        if old.get("spec") != object.get("spec") {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            metadata_mut(&mut object).insert("generation".into(), json!(generation + 1));
        }
        self.rv += 1;
        metadata_mut(&mut object).insert("resourceVersion".into(), json!(self.rv.to_string()));
        self.objects
            .entry(resource.id())
            .or_default()
            .insert((namespace, name), object.clone());
        self.record(resource, Change::Modified, object.clone(), Some(old));
        Ok(object)
    }

    /// Replaces an object if `metadata.resourceVersion` (when given) is current.
    pub fn update(&mut self, resource: &Resource, object: Value) -> Result<Value, ApiError> {
        let (namespace, name) = key_of(&object);
        let Some(old) = self.get(resource, &namespace, &name) else {
            return Err(ApiError::not_found(resource, &name));
        };
        if let Some(rv) = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            && !rv.is_empty()
            && Some(rv)
                != old
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
        {
            return Err(ApiError::conflict(resource, &name));
        }
        if let Some(uid) = object.pointer("/metadata/uid").and_then(Value::as_str)
            && !uid.is_empty()
            && Some(uid) != old.pointer("/metadata/uid").and_then(Value::as_str)
        {
            return Err(ApiError::conflict(resource, &name));
        }
        self.replace(resource, object)
    }

    pub fn delete(&mut self, resource: &Resource, namespace: &str, name: &str) -> Option<Value> {
        let mut object = self
            .objects
            .get_mut(resource.id())?
            .remove(&(namespace.to_string(), name.to_string()))?;
        self.rv += 1;
        metadata_mut(&mut object).insert("resourceVersion".into(), json!(self.rv.to_string()));
        self.record(resource, Change::Deleted, object.clone(), None);
        Some(object)
    }

    fn record(
        &mut self,
        resource: &Resource,
        change: Change,
        object: Value,
        previous: Option<Value>,
    ) {
        self.log.push_back(LogEntry {
            rv: self.rv,
            resource: resource.id(),
            change,
            object,
            previous,
        });
        while self.log.len() > LOG_CAPACITY {
            if let Some(dropped) = self.log.pop_front() {
                self.oldest = dropped.rv;
            }
        }
        self.notify.send_replace(self.rv);
    }

    /// Forgets the change log before `rv` (tests of expired watches).
    #[cfg(test)]
    pub fn expire_log_before(&mut self, rv: u64) {
        self.log.retain(|e| e.rv >= rv);
        self.oldest = rv;
    }

    /// Changes after `rv` of one resource, or None if `rv` is older than the log.
    pub fn changes_since(&self, resource: &Resource, rv: u64) -> Option<Vec<LogEntry>> {
        if rv < self.oldest {
            return None;
        }
        Some(
            self.log
                .iter()
                .filter(|e| e.rv > rv && e.resource == resource.id())
                .cloned()
                .collect(),
        )
    }
}

/// (namespace, name) of an object.
pub fn key_of(object: &Value) -> (String, String) {
    (
        str_at(object, "/metadata/namespace").to_string(),
        str_at(object, "/metadata/name").to_string(),
    )
}

/// The string at a JSON pointer, or "".
pub fn str_at<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `metadata` as a mutable map (created if missing).
pub fn metadata_mut(object: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !object.is_object() {
        *object = json!({});
    }
    let map = object.as_object_mut().expect("object checked above");
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut().expect("metadata checked above")
}

/// RFC 3339 UTC with second precision, as Kubernetes writes timestamps.
pub fn format_time(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Parses what `format_time` writes (and fractional seconds); None otherwise.
pub fn parse_time(text: &str) -> Option<SystemTime> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let hour: i64 = t.next()?.parse().ok()?;
    let minute: i64 = t.next()?.parse().ok()?;
    let second: f64 = t.next()?.parse().ok()?;
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60;
    let secs = u64::try_from(secs).ok()?;
    let fraction = std::time::Duration::try_from_secs_f64(second).ok()?;
    UNIX_EPOCH
        .checked_add(std::time::Duration::from_secs(secs))?
        .checked_add(fraction)
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::kube::resources;
    use std::time::Duration;

    #[test]
    fn times_round_trip_in_rfc3339() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let text = format_time(t);
        assert_eq!(text, "2026-11-18T11:06:40Z");
        assert_eq!(parse_time(&text), Some(t));
        assert_eq!(format_time(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn updates_with_a_stale_resource_version_conflict() {
        let mut store = Store::new();
        let nodes = resources::find("", "nodes").unwrap();
        let created = store
            .create(
                nodes,
                json!({"metadata": {"name": "n1"}, "spec": {}}),
                UNIX_EPOCH,
            )
            .unwrap();
        let mut changed = created.clone();
        changed["spec"]["unschedulable"] = json!(true);
        let updated = store.update(nodes, changed.clone()).unwrap();
        assert_ne!(
            updated["metadata"]["resourceVersion"],
            created["metadata"]["resourceVersion"]
        );
        assert_eq!(updated["metadata"]["generation"], json!(2));
        let err = store.update(nodes, changed).unwrap_err();
        assert_eq!(err.code, 409);
        assert_eq!(err.reason, "Conflict");
        assert!(err.message.contains("the object has been modified"));
        let err = store
            .create(nodes, json!({"metadata": {"name": "n1"}}), UNIX_EPOCH)
            .unwrap_err();
        assert_eq!(err.reason, "AlreadyExists");
    }

    #[test]
    fn the_change_log_serves_watches_and_expires() {
        let mut store = Store::new();
        let nodes = resources::find("", "nodes").unwrap();
        let start = store.resource_version();
        store
            .create(nodes, json!({"metadata": {"name": "a"}}), UNIX_EPOCH)
            .unwrap();
        store.delete(nodes, "", "a").unwrap();
        let changes = store.changes_since(nodes, start).unwrap();
        let kinds: Vec<_> = changes.iter().map(|c| c.change).collect();
        assert_eq!(kinds, vec![Change::Added, Change::Deleted]);
        store.oldest = 100;
        assert!(store.changes_since(nodes, start).is_none());
    }
}
