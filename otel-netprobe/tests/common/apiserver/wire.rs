//! Paths, query strings, selectors and the JSON the protocol is made of.

use super::{
    Body, BodyExt, Bytes, Full, HashMap, Key, Response, StatusCode, SystemTime, UNIX_EPOCH, Value,
    header, json,
};

/// Splits `/api/v1[/namespaces/{ns}]/{plural}[/{name}]` (or `/apis/{group}/{version}/...`).
pub(super) fn parse_path(path: &str) -> Option<(Key, Option<String>, Option<String>)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ((*version).to_owned(), rest),
        ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
        _ => return None,
    };
    let (namespace, plural, name) = match rest {
        [plural] => (None, plural, None),
        [plural, name] => (None, plural, Some(name)),
        ["namespaces", ns, plural] => (Some(ns), plural, None),
        ["namespaces", ns, plural, name] => (Some(ns), plural, Some(name)),
        _ => return None,
    };
    let owned = |s: &&str| (*s).to_owned();
    Some((
        (api_version, owned(plural)),
        namespace.map(owned),
        name.map(owned),
    ))
}

/// The decoded query string.
pub(super) struct Query(HashMap<String, String>);

impl Query {
    pub(super) fn parse(query: &str) -> Self {
        let pairs = query.split('&').filter(|p| !p.is_empty()).map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        });
        Self(pairs.collect())
    }

    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A number above zero.
    pub(super) fn positive<T: std::str::FromStr + Default + PartialOrd>(
        &self,
        key: &str,
    ) -> Option<T> {
        self.get(key)?.parse().ok().filter(|n| *n > T::default())
    }

    pub(super) fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
}

/// Decodes `application/x-www-form-urlencoded` text.
pub(super) fn decode(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'+' => b' ',
            b'%' => {
                let hex = [bytes.next().unwrap_or(b'?'), bytes.next().unwrap_or(b'?')];
                let hex = std::str::from_utf8(&hex).unwrap_or("?");
                u8::from_str_radix(hex, 16).unwrap_or(b'?')
            }
            b => b,
        });
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Label and field selectors: each requirement must hold.
#[derive(Default)]
pub(super) struct Selector {
    labels: Vec<(String, Op, String)>,
    fields: Vec<(String, Op, String)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Equal,
    NotEqual,
    Exists,
    Absent,
}

impl Selector {
    pub(super) fn parse(query: &Query) -> Result<Self, String> {
        let parse = |selector: Option<&str>| {
            let terms = selector
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty());
            terms
                .map(|term| {
                    let (key, op, value) = if term.contains(['(', ' ']) {
                        return Err(format!("unsupported selector `{term}`"));
                    } else if let Some((k, v)) = term.split_once("!=") {
                        (k, Op::NotEqual, v)
                    } else if let Some((k, v)) =
                        term.split_once("==").or_else(|| term.split_once('='))
                    {
                        (k, Op::Equal, v)
                    } else if let Some(k) = term.strip_prefix('!') {
                        (k, Op::Absent, "")
                    } else {
                        (term, Op::Exists, "")
                    };
                    Ok((key.to_owned(), op, value.to_owned()))
                })
                .collect::<Result<Vec<_>, String>>()
        };
        let selector = Self {
            labels: parse(query.get("labelSelector"))?,
            fields: parse(query.get("fieldSelector"))?,
        };
        if selector
            .fields
            .iter()
            .any(|(_, op, _)| matches!(op, Op::Exists | Op::Absent))
        {
            return Err("field selectors take = and != only".into());
        }
        Ok(selector)
    }

    pub(super) fn matches(&self, object: &Value) -> bool {
        let labels = self.labels.iter().all(|(key, op, value)| {
            let label = object["metadata"]["labels"]
                .get(key)
                .and_then(Value::as_str);
            match op {
                Op::Equal => label == Some(value.as_str()),
                Op::NotEqual => label != Some(value.as_str()),
                Op::Exists => label.is_some(),
                Op::Absent => label.is_none(),
            }
        });
        // A missing field reads as "", as `spec.nodeName=` matches unscheduled pods.
        let fields = self.fields.iter().all(|(path, op, value)| {
            let field = match path.split('.').try_fold(object, |v, k| v.get(k)) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (field == *value) == (*op == Op::Equal)
        });
        labels && fields
    }
}

pub(super) fn key_of<K: kube::Resource<DynamicType = ()>>() -> Key {
    (
        K::api_version(&()).into_owned(),
        K::plural(&()).into_owned(),
    )
}

pub(super) fn namespace_of(object: &Value) -> &str {
    object["metadata"]["namespace"].as_str().unwrap_or_default()
}

/// A list item: real servers leave out apiVersion and kind (the list carries them).
pub(super) fn without_type(mut object: Value) -> Value {
    if let Some(fields) = object.as_object_mut() {
        fields.remove("apiVersion");
        fields.remove("kind");
    }
    object
}

/// Now as a Kubernetes timestamp (whole seconds, UTC).
pub(super) fn now() -> Value {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let time = k8s_openapi::jiff::Timestamp::from_second(secs as i64).expect("now is a valid time");
    json!(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(time))
}

pub(super) fn event_line(kind: &str, object: &Value) -> Bytes {
    line(&json!({ "type": kind, "object": object }))
}

pub(super) fn bookmark_line(
    api_version: &str,
    kind: &str,
    rv: u64,
    initial_events_end: bool,
) -> Bytes {
    let mut metadata = json!({ "resourceVersion": rv.to_string() });
    if initial_events_end {
        metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    let object = json!({ "kind": kind, "apiVersion": api_version, "metadata": metadata });
    line(&json!({ "type": "BOOKMARK", "object": object }))
}

/// JSON and a newline.
pub(super) fn line(value: &Value) -> Bytes {
    let mut line = serde_json::to_vec(value).expect("JSON values serialize");
    line.push(b'\n');
    line.into()
}

pub(super) fn full(value: &Value) -> Body {
    full_bytes(
        serde_json::to_vec(value)
            .expect("JSON values serialize")
            .into(),
    )
}

pub(super) fn full_bytes(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(super) fn respond(code: StatusCode, body: Body) -> Response<Body> {
    let response = Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json");
    response.body(body).expect("a valid response")
}

pub(super) fn status_json(code: StatusCode, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    })
}

pub(super) fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    respond(code, full(&status_json(code, reason, message)))
}

pub(super) fn not_found(path: &str) -> Response<Body> {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("the server could not find {path}"),
    )
}
