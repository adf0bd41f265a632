//! The three patch formats the API server accepts: JSON merge patch
//! (RFC 7386), strategic merge patch (the Kubernetes dialect) and JSON patch
//! (RFC 6902).

use serde_json::{Map, Value};

/// The patch type named by a request's `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    StrategicMerge,
    Json,
    /// Server-side apply; approximated by a strategic merge of the applied
    /// configuration (no field ownership, no conflicts).
    Apply,
}

impl PatchType {
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let base = content_type.split(';').next().unwrap_or_default().trim();
        match base {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::StrategicMerge),
            "application/json-patch+json" => Some(Self::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// Applies `patch` of `kind` to `target`.
pub fn apply(target: &Value, patch: &Value, kind: PatchType) -> Result<Value, String> {
    match kind {
        PatchType::Merge => Ok(merge(target, patch)),
        PatchType::StrategicMerge | PatchType::Apply => strategic_merge(target, patch, ""),
        PatchType::Json => json_patch(target, patch),
    }
}

/// RFC 7386 JSON merge patch.
pub fn merge(target: &Value, patch: &Value) -> Value {
    match patch {
        Value::Object(p) => {
            let mut out = match target {
                Value::Object(t) => t.clone(),
                _ => Map::new(),
            };
            for (k, v) in p {
                if v.is_null() {
                    out.remove(k);
                } else {
                    let merged = merge(out.get(k).unwrap_or(&Value::Null), v);
                    out.insert(k.clone(), merged);
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// The merge key of the lists the strategic merge patch merges by key
/// (`patchStrategy: merge` in the Kubernetes types); every other list is
/// replaced, as the server does for fields without a strategy.
fn merge_key(path: &str) -> Option<&'static str> {
    let last = path.rsplit('/').next().unwrap_or_default();
    match last {
        "conditions" => Some("type"),
        "addresses" if path.starts_with("/status") => Some("type"),
        "containers" | "initContainers" | "ephemeralContainers" | "volumes" | "env" => Some("name"),
        "ports" if path.contains("containers") => Some("containerPort"),
        "volumeMounts" => Some("mountPath"),
        "ownerReferences" => Some("uid"),
        "imagePullSecrets" => Some("name"),
        "hostAliases" => Some("ip"),
        "tolerations" | "taints" | "finalizers" => None,
        _ => None,
    }
}

fn strategic_merge(target: &Value, patch: &Value, path: &str) -> Result<Value, String> {
    let Value::Object(p) = patch else {
        return Ok(patch.clone());
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = p.clone();
        replaced.remove("$patch");
        return Ok(Value::Object(replaced));
    }
    if p.get("$patch").and_then(Value::as_str) == Some("delete") {
        return Ok(Value::Null);
    }
    let mut out = match target {
        Value::Object(t) => t.clone(),
        _ => Map::new(),
    };
    for (k, v) in p {
        if k.starts_with('$') {
            // $setElementOrder/…, $retainKeys, $deleteFromPrimitiveList/…:
            // ordering and retention directives; the merge below is enough.
            if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/")
                && let (Some(Value::Array(items)), Some(remove)) =
                    (out.get_mut(field), v.as_array())
            {
                items.retain(|i| !remove.contains(i));
            }
            continue;
        }
        let child_path = format!("{path}/{k}");
        if v.is_null() {
            out.remove(k);
            continue;
        }
        let current = out.get(k).cloned().unwrap_or(Value::Null);
        let merged = match (v, merge_key(&child_path)) {
            (Value::Array(items), Some(key)) => merge_list(&current, items, key, &child_path)?,
            (Value::Array(items), None) => Value::Array(
                items
                    .iter()
                    .filter(|i| i.get("$patch").is_none())
                    .cloned()
                    .collect(),
            ),
            (Value::Object(_), _) => strategic_merge(&current, v, &child_path)?,
            _ => v.clone(),
        };
        if merged.is_null() {
            out.remove(k);
        } else {
            out.insert(k.clone(), merged);
        }
    }
    Ok(Value::Object(out))
}

fn merge_list(current: &Value, items: &[Value], key: &str, path: &str) -> Result<Value, String> {
    let mut out: Vec<Value> = current.as_array().cloned().unwrap_or_default();
    for item in items {
        if item.get("$patch").and_then(Value::as_str) == Some("replace") {
            return Ok(Value::Array(
                items
                    .iter()
                    .filter(|i| i.get("$patch").is_none())
                    .cloned()
                    .collect(),
            ));
        }
    }
    for item in items {
        let Some(id) = item.get(key) else {
            return Err(format!(
                "map in list {path} is missing its merge key {key:?}"
            ));
        };
        let position = out.iter().position(|e| e.get(key) == Some(id));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(i), true) => {
                out.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => out[i] = strategic_merge(&out[i], item, path)?,
            (None, false) => out.push(strategic_merge(&Value::Null, item, path)?),
        }
    }
    Ok(Value::Array(out))
}

/// RFC 6902 JSON patch.
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, String> {
    let operations = patch
        .as_array()
        .ok_or("a JSON patch must be an array of operations")?;
    let mut doc = target.clone();
    for (i, op) in operations.iter().enumerate() {
        let name = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("operation {i} has no \"op\""))?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("operation {i} has no \"path\""))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| format!("operation {i} ({name}) has no \"value\""))
        };
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("operation {i} ({name}) has no \"from\""))
        };
        match name {
            "add" => add(&mut doc, path, value()?)?,
            "remove" => {
                remove(&mut doc, path)?;
            }
            "replace" => {
                remove(&mut doc, path)?;
                add(&mut doc, path, value()?)?;
            }
            "move" => {
                let moved = remove(&mut doc, from()?)?;
                add(&mut doc, path, moved)?;
            }
            "copy" => {
                let copied = doc.pointer(from()?).cloned().ok_or_else(|| {
                    format!(
                        "operation {i}: path {} does not exist",
                        from().unwrap_or("")
                    )
                })?;
                add(&mut doc, path, copied)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&value()?) {
                    return Err(format!("testing value {path} failed"));
                }
            }
            other => return Err(format!("unknown JSON patch operation {other:?}")),
        }
    }
    Ok(doc)
}

fn split_pointer(path: &str) -> Result<(String, String), String> {
    if path.is_empty() {
        return Err("the root of the document cannot be patched".to_string());
    }
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| format!("invalid JSON pointer {path:?}"))?;
    Ok((
        parent.to_string(),
        last.replace("~1", "/").replace("~0", "~"),
    ))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let (parent, last) = split_pointer(path)?;
    let container = doc
        .pointer_mut(&parent)
        .ok_or_else(|| format!("add operation does not apply: doc is missing path: {parent:?}"))?;
    match container {
        Value::Object(map) => {
            map.insert(last, value);
        }
        Value::Array(items) => {
            if last == "-" {
                items.push(value);
            } else {
                let index: usize = last
                    .parse()
                    .map_err(|_| format!("invalid array index {last:?}"))?;
                if index > items.len() {
                    return Err(format!("array index {index} out of bounds in {path:?}"));
                }
                items.insert(index, value);
            }
        }
        _ => return Err(format!("cannot add to a scalar at {parent:?}")),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    let missing = || format!("remove operation does not apply: doc is missing path: {path:?}");
    let container = doc.pointer_mut(&parent).ok_or_else(missing)?;
    match container {
        Value::Object(map) => map.remove(&last).ok_or_else(missing),
        Value::Array(items) => {
            let index: usize = last
                .parse()
                .map_err(|_| format!("invalid array index {last:?}"))?;
            if index >= items.len() {
                return Err(missing());
            }
            Ok(items.remove(index))
        }
        _ => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_sets_and_removes_fields() {
        let node = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"taints": [{"key": "x"}]}});
        let out = merge(
            &node,
            &json!({"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"unschedulable": true}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({"b": "2", "c": "3"}));
        assert_eq!(out["spec"]["unschedulable"], json!(true));
        assert_eq!(out["spec"]["taints"], json!([{"key": "x"}]));
    }

    #[test]
    fn strategic_merge_merges_conditions_by_type_and_replaces_taints() {
        let node = json!({
            "spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}]}
        });
        let patch = json!({
            "$setElementOrder/conditions": [{"type": "Ready"}, {"type": "DiskPressure"}],
            "spec": {"taints": [{"key": "b", "effect": "NoExecute"}], "unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}]}
        });
        let out = strategic_merge(&node, &patch, "").unwrap();
        assert_eq!(
            out["spec"]["taints"],
            json!([{"key": "b", "effect": "NoExecute"}])
        );
        assert_eq!(out["spec"]["unschedulable"], json!(true));
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}, {"type": "DiskPressure", "status": "False"}])
        );
        let deleted = strategic_merge(
            &out,
            &json!({"status": {"conditions": [{"type": "DiskPressure", "$patch": "delete"}]}}),
            "",
        )
        .unwrap();
        assert_eq!(deleted["status"]["conditions"].as_array().unwrap().len(), 1);
        assert!(
            strategic_merge(
                &node,
                &json!({"status": {"conditions": [{"status": "x"}]}}),
                ""
            )
            .is_err()
        );
    }

    #[test]
    fn json_patch_applies_operations_in_order_and_fails_whole() {
        let node =
            json!({"metadata": {"labels": {"a/b": "1"}}, "spec": {"taints": [{"key": "x"}]}});
        let out = json_patch(
            &node,
            &json!([
                {"op": "add", "path": "/spec/unschedulable", "value": true},
                {"op": "remove", "path": "/metadata/labels/a~1b"},
                {"op": "add", "path": "/spec/taints/-", "value": {"key": "y"}},
                {"op": "replace", "path": "/spec/taints/0", "value": {"key": "z"}},
                {"op": "test", "path": "/spec/unschedulable", "value": true},
                {"op": "copy", "from": "/spec/taints/1", "path": "/spec/first"},
                {"op": "move", "from": "/spec/first", "path": "/spec/moved"}
            ]),
        )
        .unwrap();
        assert_eq!(out["spec"]["taints"], json!([{"key": "z"}, {"key": "y"}]));
        assert_eq!(out["spec"]["moved"], json!({"key": "y"}));
        assert!(out["spec"].get("first").is_none());
        assert_eq!(out["metadata"]["labels"], json!({}));
        assert!(
            json_patch(
                &node,
                &json!([{"op": "test", "path": "/spec/unschedulable", "value": true}])
            )
            .is_err()
        );
        assert!(json_patch(&node, &json!([{"op": "remove", "path": "/nope"}])).is_err());
        assert!(json_patch(&node, &json!({"op": "add"})).is_err());
    }

    #[test]
    fn content_types_select_the_patch_type() {
        assert_eq!(
            PatchType::from_content_type("application/strategic-merge-patch+json"),
            Some(PatchType::StrategicMerge)
        );
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::Merge)
        );
        assert_eq!(
            PatchType::from_content_type("application/json-patch+json"),
            Some(PatchType::Json)
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
    }
}
