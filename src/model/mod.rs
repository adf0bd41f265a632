//! The cluster's `apimodel.json`: a lossless document plus a typed view.
//!
//! [`ApiModel`] keeps the whole JSON document (every key, in its order, numbers
//! as written) and derives a typed [`ContainerService`] view of the fields aksup
//! uses. Changes go through methods that edit the document, so a load → save
//! round trip changes nothing but what aksup meant to change.

mod format;
mod save;
mod secret;
mod types;
mod validate;

use std::path::{Path, PathBuf};

use serde_json::Value;

pub use format::to_aks_engine_json;
pub use save::save_atomic;
pub use secret::Secret;
pub use types::*;

/// Errors of loading, validating and saving an apimodel. Messages say what is
/// wrong and what to do; none of them contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the api model {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the api model is not valid JSON: {message} at line {line}, column {column}; fix the file or restore it from its backup"
    )]
    Syntax {
        message: String,
        line: usize,
        column: usize,
    },
    #[error(
        "the api model is not a JSON object: expected {{\"apiVersion\": \"vlabs\", \"properties\": {{...}}}}"
    )]
    NotAnObject,
    #[error("field {field} has the wrong type: {message}")]
    Shape { field: String, message: String },
    #[error("{0}")]
    Invalid(#[from] validate::ValidationError),
    #[error("cannot save the api model to {path}: {step}; the original file is unchanged")]
    Save {
        path: PathBuf,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub use validate::ValidationError;

/// A loaded apimodel: the lossless document and its typed view.
#[derive(Clone)]
pub struct ApiModel {
    raw: Value,
    view: ContainerService,
}

impl std::fmt::Debug for ApiModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The raw document holds secrets: show only the (redacting) typed view.
        f.debug_struct("ApiModel")
            .field("view", &self.view)
            .finish_non_exhaustive()
    }
}

impl ApiModel {
    /// Parses an apimodel from text. Checks JSON syntax and the types of the
    /// fields aksup reads; does not apply the upgrade rules (see [`ApiModel::validate`]).
    pub fn parse(text: &str) -> Result<Self> {
        let raw: Value = serde_json::from_str(text).map_err(|err| Error::Syntax {
            message: syntax_message(&err),
            line: err.line(),
            column: err.column(),
        })?;
        Self::from_value(raw)
    }

    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    fn from_value(raw: Value) -> Result<Self> {
        if !raw.is_object() {
            return Err(Error::NotAnObject);
        }
        let view = derive_view(&raw)?;
        Ok(Self { raw, view })
    }

    /// The typed view of the fields aksup uses.
    pub fn view(&self) -> &ContainerService {
        &self.view
    }

    /// The whole document, unknown fields included. Contains secrets: never log it.
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// Checks the rules an apimodel written by `aks-engine-azurestack deploy`
    /// must meet before aksup upgrades its cluster.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate::validate(&self.view)
    }

    /// Sets the value at a JSON pointer (`/properties/orchestratorProfile/orchestratorVersion`),
    /// creating missing objects on the way; keeps the position of an existing key,
    /// appends a new one. Re-derives the typed view.
    pub fn set(&mut self, pointer: &str, value: Value) -> Result<()> {
        let mut next = self.raw.clone();
        set_pointer(&mut next, pointer, value).map_err(|message| Error::Shape {
            field: pointer.to_owned(),
            message,
        })?;
        let view = derive_view(&next)?;
        self.raw = next;
        self.view = view;
        Ok(())
    }

    /// The document in aks-engine's format: 2-space indent, no HTML escaping,
    /// trailing newline.
    pub fn to_json_string(&self) -> String {
        to_aks_engine_json(&self.raw)
    }

    /// Writes the document atomically (temp file, fsync, rename), mode 0600,
    /// keeping the previous file as `<path>.bak`.
    pub fn save(&self, path: &Path) -> Result<()> {
        save_atomic(path, self.to_json_string().as_bytes())
    }
}

fn derive_view(raw: &Value) -> Result<ContainerService> {
    serde_json::from_value::<ContainerService>(raw.clone()).map_err(|err| Error::Shape {
        field: "apimodel".to_owned(),
        message: err.to_string(),
    })
}

fn syntax_message(err: &serde_json::Error) -> String {
    // serde_json appends " at line L column C"; we print those ourselves.
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(index) => text[..index].to_owned(),
        None => text,
    }
}

fn set_pointer(root: &mut Value, pointer: &str, value: Value) -> std::result::Result<(), String> {
    let tokens: Vec<String> = pointer
        .strip_prefix('/')
        .ok_or_else(|| "a JSON pointer starts with '/'".to_owned())?
        .split('/')
        .map(|token| token.replace("~1", "/").replace("~0", "~"))
        .collect();
    let (last, parents) = tokens.split_last().ok_or("empty pointer")?;
    let mut node = root;
    for token in parents {
        node = match node {
            Value::Object(map) => map
                .entry(token.clone())
                .or_insert_with(|| Value::Object(Default::default())),
            Value::Array(items) => {
                let index: usize = token
                    .parse()
                    .map_err(|_| format!("{token} is not an index"))?;
                items
                    .get_mut(index)
                    .ok_or_else(|| format!("index {index} is out of range"))?
            }
            _ => return Err(format!("{token} is not inside an object")),
        };
        if node.is_null() {
            *node = Value::Object(Default::default());
        }
    }
    match node {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => {
            let index: usize = last
                .parse()
                .map_err(|_| format!("{last} is not an index"))?;
            let slot = items
                .get_mut(index)
                .ok_or_else(|| format!("index {index} is out of range"))?;
            *slot = value;
            Ok(())
        }
        _ => Err(format!("{last} is not inside an object")),
    }
}
