//! Reading a run's stream (server-sent events) event by event.

/// One event: its name, its data and, on a resumable run's stream, its id.
pub struct Event {
    pub id: Option<i64>,
    pub event: String,
    #[allow(dead_code)]
    pub data: String,
}

/// The events of a response body, as they come.
pub struct Reader {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Reader {
    pub fn new(resp: reqwest::Response) -> Reader {
        Reader {
            resp,
            buf: Vec::new(),
        }
    }

    /// The next event (comments such as heartbeats skipped); `None` at the end of the body.
    pub async fn next(&mut self) -> Result<Option<Event>, reqwest::Error> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                if let Some(event) = parse(&block) {
                    return Ok(Some(event));
                }
                continue;
            }
            match self.resp.chunk().await? {
                Some(chunk) => self.buf.extend_from_slice(&chunk),
                None => return Ok(None),
            }
        }
    }
}

/// An event block's fields; `None` for a block of comments only.
fn parse(block: &[u8]) -> Option<Event> {
    let text = String::from_utf8_lossy(block);
    let (mut id, mut event, mut data, mut any) = (None, None, Vec::new(), false);
    for line in text.lines() {
        let (field, value) = match line.split_once(':') {
            Some(("", _)) => continue,
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        any = true;
        match field {
            "id" => id = value.trim().parse().ok(),
            "event" => event = Some(value.to_string()),
            "data" => data.push(value),
            _ => {}
        }
    }
    any.then(|| Event {
        id,
        event: event.unwrap_or_else(|| "message".into()),
        data: data.join("\n"),
    })
}
