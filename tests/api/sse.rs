//! Reading SSE bodies as the SDKs do: blocks split on a blank line, `event`, `data` and `id`
//! fields, `:` comments skipped.

use serde_json::Value;

/// One event: its `id` (when the stream is resumable), name and JSON data.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Option<i64>,
    pub name: String,
    pub data: Value,
}

fn parse(block: &str) -> Option<Event> {
    let (mut id, mut name, mut data) = (None, None, String::new());
    for line in block.lines() {
        if let Some(n) = line.strip_prefix("event:") {
            name = Some(n.trim().to_string());
        } else if let Some(d) = line.strip_prefix("data:") {
            data.push_str(d.trim_start());
        } else if let Some(i) = line.strip_prefix("id:") {
            id = Some(i.trim().parse().expect("numeric event id"));
        }
    }
    Some(Event {
        id,
        name: name?,
        data: serde_json::from_str(&data).ok()?,
    })
}

/// The events of a whole SSE body.
pub fn events(body: &str) -> Vec<Event> {
    body.replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(parse)
        .collect()
}

/// (name, data) of each event of a whole SSE body.
pub fn sse_events(body: &str) -> Vec<(String, Value)> {
    events(body).into_iter().map(|e| (e.name, e.data)).collect()
}

/// Reads a streaming response event by event.
pub struct Reader {
    resp: reqwest::Response,
    buf: String,
}

impl Reader {
    pub fn new(resp: reqwest::Response) -> Reader {
        Reader {
            resp,
            buf: String::new(),
        }
    }

    /// The next event, or `None` when the body has ended.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            let normalised = self.buf.replace("\r\n", "\n");
            if let Some(end) = normalised.find("\n\n") {
                let block = normalised[..end].to_string();
                self.buf = normalised[end + 2..].to_string();
                match parse(&block) {
                    Some(e) => return Some(e),
                    None => continue,
                }
            }
            self.buf = normalised;
            let chunk = self.resp.chunk().await.expect("stream chunk")?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Every event up to the end of the body.
    pub async fn rest(&mut self) -> Vec<Event> {
        let mut all = Vec::new();
        while let Some(e) = self.next().await {
            all.push(e);
        }
        all
    }
}
