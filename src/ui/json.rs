//! `--progress json`: one JSON object per line on stdout, for machines.

use serde_json::json;

use super::Printer;
use crate::orchestrate::event::BuildEvent;
use crate::orchestrate::Reporter;

/// Writes every event as one JSON line to stdout.
pub struct JsonReporter {
    printer: Printer,
}

impl JsonReporter {
    /// A reporter writing through `printer`.
    pub fn new(printer: Printer) -> Self {
        Self { printer }
    }
}

fn millis(t: Option<std::time::SystemTime>) -> Option<u128> {
    t.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis())
}

impl Reporter for JsonReporter {
    fn report(&self, event: BuildEvent) {
        let values = match event {
            BuildEvent::Started {
                service,
                image,
                node,
                retry,
                handoffs,
                ..
            } => {
                let handoffs: Vec<serde_json::Value> = handoffs
                    .iter()
                    .map(|h| json!({"dependency": h.dependency, "registry": h.registry, "reference": h.reference}))
                    .collect();
                vec![
                    json!({"event": "started", "service": service, "image": image, "node": node, "retry": retry, "handoffs": handoffs}),
                ]
            }
            BuildEvent::Status { service, update } => {
                let mut v = Vec::new();
                for x in update.vertexes {
                    v.push(json!({"event": "step", "service": service, "id": x.digest, "name": x.name,
                        "cached": x.cached, "started_ms": millis(x.started), "completed_ms": millis(x.completed),
                        "error": if x.error.is_empty() { None } else { Some(x.error) }}));
                }
                for p in update.progress {
                    v.push(json!({"event": "progress", "service": service, "step": p.vertex, "id": p.id,
                        "name": p.name, "current": p.current, "total": p.total, "completed": p.completed}));
                }
                for l in update.logs {
                    v.push(json!({"event": "log", "service": service, "step": l.vertex, "stream": l.stream,
                        "text": String::from_utf8_lossy(&l.data)}));
                }
                for w in update.warnings {
                    v.push(json!({"event": "warning", "service": service, "step": w.vertex, "text": w.short}));
                }
                v
            }
            BuildEvent::Finished { service, outcome } => vec![json!({
                "event": "finished", "service": service, "image": outcome.image,
                "image_id": outcome.image_id, "error": outcome.error, "hint": outcome.hint,
                "elapsed_ms": outcome.elapsed.as_millis(),
                // Named and counted as in the text outputs (`ui::summary::sent`).
                "context_files_sent": outcome.transfer.context_files_sent,
                "context_bytes_sent": outcome.transfer.context_bytes_sent,
                "dockerfile_files_sent": super::summary::dockerfile_sent(&outcome.transfer).0,
                "dockerfile_bytes_sent": super::summary::dockerfile_sent(&outcome.transfer).1,
                "files_hashed": outcome.hashing.files_hashed,
                "bytes_hashed": outcome.hashing.bytes_hashed,
                "hash_cache_hits": outcome.hashing.cache_hits,
                "up_to_date": outcome.up_to_date,
                "up_to_date_registry": outcome.from_registry,
                "pulled": outcome.pulled,
                "steps_run": outcome.steps_run,
                "steps_cached": outcome.steps_cached,
            })],
        };
        let text: String = values.iter().map(|v| format!("{v}\n")).collect();
        self.printer.data(&text);
    }
}
