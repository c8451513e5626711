use std::{fmt, io::Write};

use serde_json::{Map, Value};
use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id, Record},
};
use tracing_subscriber::{
    EnvFilter, Layer, fmt as text, layer::Context, prelude::*, registry::LookupSpan,
};

/// Installs the process-wide subscriber. `json` selects JSON lines for log shippers; every
/// JSON line then carries `node_id` (when given) and the fields of the spans it was emitted
/// in (`request_id`, `user_id`, `socket_id`, ...), flattened to the top level so a shipper
/// can filter on them without knowing which span set them.
pub fn init(json: bool, node_id: Option<&str>) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,socketioxide=warn,engineioxide=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    // try_init: tests call this from many tests in one process.
    let _ = if json {
        registry
            .with(JsonLines {
                node_id: node_id.map(str::to_owned),
            })
            .try_init()
    } else {
        registry.with(text::layer()).try_init()
    };
}

/// Writes one JSON object per event to stdout.
struct JsonLines {
    node_id: Option<String>,
}

/// A span's fields as recorded so far; fields declared `Empty` arrive later through
/// `Span::record` (the caller's id, once authenticated).
struct SpanFields(Map<String, Value>);

impl<S> Layer<S> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Map::new();
        attrs.record(&mut Fields(&mut fields));
        span.extensions_mut().insert(SpanFields(fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(fields)) = extensions.get_mut::<SpanFields>() {
            values.record(&mut Fields(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // Outer spans first, so an inner span's field of the same name wins; the event's own
        // fields win over all of them.
        let mut fields = Map::new();
        let mut spans = Vec::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                spans.push(span.name());
                if let Some(SpanFields(own)) = span.extensions().get::<SpanFields>() {
                    fields.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        event.record(&mut Fields(&mut fields));
        let meta = event.metadata();
        // Events forwarded from the `log` crate name their origin in `log.*` fields.
        let target = match fields.remove("log.target") {
            Some(Value::String(t)) => t,
            _ => meta.target().to_owned(),
        };
        fields.retain(|k, _| !k.starts_with("log."));
        let message = fields.remove("message");

        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        if let Some(node) = &self.node_id {
            line.insert("node_id".into(), node.clone().into());
        }
        line.insert("target".into(), target.into());
        if let Some(message) = message {
            line.insert("message".into(), message);
        }
        for (k, v) in fields {
            line.entry(k).or_insert(v);
        }
        if !spans.is_empty() {
            line.insert("spans".into(), spans.join(":").into());
        }
        let mut buf = Value::Object(line).to_string().into_bytes();
        buf.push(b'\n');
        // One write per line, under the lock, so lines of concurrent events never interleave.
        let _ = std::io::stdout().lock().write_all(&buf);
    }
}

/// Records tracing fields as JSON values.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}
