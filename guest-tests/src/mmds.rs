//! A host stand-in for Firecracker's microVM metadata service (MMDS) version 2, for guests under
//! QEMU, which has none: guests reach it through [`crate::Vm::guestfwd`].
//!
//! It answers as Firecracker's MMDS V2 does (`src/vmm/src/mmds/mod.rs`, docs/mmds): a session
//! starts with `PUT /latest/api/token` carrying `X-metadata-token-ttl-seconds: N` (1..=21600),
//! answered with a token in text/plain; every `GET` must carry it in `X-metadata-token` (or
//! AWS's `X-aws-ec2-metadata-token`), else 401. A GET's path is a JSON pointer into the data
//! store (`//` collapsed, a trailing `/` ignored, so `/` is the whole store), answered in JSON
//! with `Accept: application/json`, else in IMDS text (an object's keys one a line, a
//! string's value; other values 501); 404 when nothing is there. Other methods get 405.
//!
//! Every request is recorded ([`Server::requests`]) so that a test can check the order the
//! guest asked in and that it never asked without its token; a request that is not HTTP is
//! answered 400 and recorded in [`Server::errors`].

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Result;

/// Where a session token is asked for.
pub const TOKEN_PATH: &str = "/latest/api/token";
/// Firecracker's bounds for a token's time to live, in seconds.
pub const TTL_SECONDS: std::ops::RangeInclusive<u64> = 1..=21600;
/// A request head longer than this is refused: the guest would be broken, not just verbose.
const MAX_HEAD: u64 = 16 * 1024;

/// One HTTP request as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target as sent (origin form `/a/b`, or absolute form `http://host/a/b`).
    pub path: String,
    /// Header names and values in the order sent, names as the client spelled them.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The value of header `name` (any case), if the request has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The session token it carries (`X-metadata-token` or `X-aws-ec2-metadata-token`).
    pub fn token(&self) -> Option<&str> {
        self.header("x-metadata-token")
            .or_else(|| self.header("x-aws-ec2-metadata-token"))
    }
}

#[derive(Default)]
struct State {
    data: Value,
    /// Token -> expiry.
    tokens: HashMap<String, Instant>,
    refuse_tokens: bool,
    requests: Vec<Request>,
    errors: Vec<String>,
    connections: usize,
}

/// An MMDS V2 server on 127.0.0.1, serving until dropped.
pub struct Server {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `data` (the data store, as `PUT /mmds` would set it) on an ephemeral port.
    pub fn start(data: Value) -> Result<Server> {
        Server::with(State {
            data,
            ..State::default()
        })
    }

    /// Like [`Server::start`], but token requests are refused with 405 Method Not Allowed
    /// (`Allow: GET`), as a V1-only metadata service answers them; GETs still need a token,
    /// so no data can reach a guest through this server.
    pub fn start_refusing_tokens(data: Value) -> Result<Server> {
        Server::with(State {
            data,
            refuse_tokens: true,
            ..State::default()
        })
    }

    fn with(state: State) -> Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        // Polled, so that dropping the server ends the thread.
        listener.set_nonblocking(true)?;
        let state = Arc::new(Mutex::new(state));
        let stop = Arc::new(AtomicBool::new(false));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let (state, stop, streams) = (state.clone(), stop.clone(), streams.clone());
            thread::spawn(move || accept_loop(listener, state, stop, streams))
        };
        Ok(Server {
            port,
            state,
            stop,
            streams,
            accept: Some(accept),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every request received so far, in order (across connections: in the order their heads
    /// were complete).
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// Requests that could not be parsed, described; each was answered 400 and its connection
    /// closed.
    pub fn errors(&self) -> Vec<String> {
        self.lock().errors.clone()
    }

    /// How many connections were accepted. Through [`crate::Vm::guestfwd`] QEMU opens one at
    /// start and sends every guest connection through it.
    pub fn connections(&self) -> usize {
        self.lock().connections
    }

    /// Waits until some request satisfies `pred`; returns it, or None after `timeout`.
    pub fn wait_for(&self, pred: impl Fn(&Request) -> bool, timeout: Duration) -> Option<Request> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.lock().requests.iter().find(|r| pred(r)) {
                return Some(r.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        // Ends the connection threads blocked in read.
        for s in self
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                if let Ok(clone) = stream.try_clone() {
                    streams
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(clone);
                }
                state.lock().unwrap_or_else(|e| e.into_inner()).connections += 1;
                let state = state.clone();
                thread::spawn(move || {
                    if let Err(e) = serve(stream, &state) {
                        record_error(&state, format!("connection: {e}"));
                    }
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(10))
            }
            Err(e) => {
                record_error(&state, format!("accept: {e}"));
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn record_error(state: &Mutex<State>, error: String) {
    state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .errors
        .push(error);
}

/// A response: status, extra headers, content type and body.
struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn new(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            content_type: "text/plain",
            body: body.into(),
        }
    }
}

/// Serves the requests of one connection until the client closes it, asks to, or sends
/// something that is not HTTP.
fn serve(stream: TcpStream, state: &Mutex<State>) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let (version, response, keep_alive) = match read_request(&mut reader)? {
            None => return Ok(()),
            Some(Err(error)) => {
                record_error(state, error.clone());
                ("HTTP/1.1".to_string(), Response::new(400, error), false)
            }
            Some(Ok((request, version))) => {
                let keep_alive = keep_alive(&request, &version);
                let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
                state.requests.push(request.clone());
                (version, respond(&mut state, &request), keep_alive)
            }
        };
        let mut head = format!(
            "{version} {} {}\r\nServer: Firecracker API\r\nConnection: {}\r\n",
            response.status,
            reason(response.status),
            if keep_alive { "keep-alive" } else { "close" }
        );
        for (name, value) in &response.headers {
            head += &format!("{name}: {value}\r\n");
        }
        head += &format!(
            "Content-Type: {}\r\nContent-Length: {}\r\n\r\n",
            response.content_type,
            response.body.len()
        );
        out.write_all((head + &response.body).as_bytes())?;
        if !keep_alive {
            return out.shutdown(Shutdown::Both);
        }
    }
}

/// A request and its HTTP version, or what is wrong with it.
type Parsed = std::result::Result<(Request, String), String>;

/// Reads one request and its body (discarded): None at a clean end of the connection, an
/// error text for anything malformed.
fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Parsed>> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader
            .by_ref()
            .take(MAX_HEAD + 1 - head.len() as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 && head.is_empty() {
            return Ok(None);
        }
        if !line.ends_with(b"\n") {
            head.extend_from_slice(&line);
            return Ok(Some(Err(if head.len() as u64 > MAX_HEAD {
                format!("request head longer than {MAX_HEAD} bytes")
            } else {
                format!(
                    "connection closed inside a request head: {:?}",
                    lossy(&head)
                )
            })));
        }
        if head.is_empty() && (line == b"\r\n" || line == b"\n") {
            continue; // RFC 9112 2.2: empty lines before a request line are ignored
        }
        let end = line == b"\r\n" || line == b"\n";
        head.extend_from_slice(&line);
        if end {
            break;
        }
    }
    let Ok(text) = std::str::from_utf8(&head) else {
        return Ok(Some(Err(format!(
            "request head not UTF-8: {:?}",
            lossy(&head)
        ))));
    };
    let mut lines = text.lines();
    let request_line = lines.next().unwrap_or_default();
    let (method, path, version) = match request_line.split(' ').collect::<Vec<_>>()[..] {
        [m, p, v] if !m.is_empty() && !p.is_empty() && v.starts_with("HTTP/1.") => (m, p, v),
        _ => return Ok(Some(Err(format!("bad request line {request_line:?}")))),
    };
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        match line.split_once(':') {
            Some((name, value)) if !name.is_empty() && !name.contains([' ', '\t']) => {
                headers.push((name.to_string(), value.trim().to_string()))
            }
            _ => return Ok(Some(Err(format!("bad header line {line:?}")))),
        }
    }
    let request = Request {
        method: method.into(),
        path: path.into(),
        headers,
    };
    if request.header("transfer-encoding").is_some() {
        return Ok(Some(Err("chunked request bodies are not supported".into())));
    }
    let length = match request.header("content-length").map(str::parse::<u64>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return Ok(Some(Err(format!("bad Content-Length in {request:?}")))),
    };
    io::copy(&mut reader.by_ref().take(length), &mut io::sink())?;
    Ok(Some(Ok((request, version.to_string()))))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// HTTP/1.1 keeps a connection unless told `close`; HTTP/1.0 closes it unless told
/// `keep-alive`.
fn keep_alive(request: &Request, version: &str) -> bool {
    let connection = request.header("connection").unwrap_or_default();
    let has = |word: &str| {
        connection
            .split(',')
            .any(|w| w.trim().eq_ignore_ascii_case(word))
    };
    match version {
        "HTTP/1.0" => has("keep-alive"),
        _ => !has("close"),
    }
}

/// Firecracker's MMDS V2 answer to `request` (`respond_to_request_mmdsv2`; the bodies are
/// its error texts, shortened).
fn respond(state: &mut State, request: &Request) -> Response {
    // The absolute form's path, as micro_http's get_abs_path.
    let path = match request.path.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("", |i| &rest[i..]),
        None => &request.path,
    };
    if path.is_empty() {
        return Response::new(400, "Invalid URI.");
    }
    let ttl = request
        .header("x-metadata-token-ttl-seconds")
        .or_else(|| request.header("x-aws-ec2-metadata-token-ttl-seconds"));
    let ttl = match ttl.map(str::parse::<u64>) {
        Some(Err(_)) => return Response::new(400, format!("Invalid TTL header: {ttl:?}.")),
        Some(Ok(n)) => Some(n),
        None => None,
    };
    let now = Instant::now();
    state.tokens.retain(|_, expiry| *expiry > now);
    // Collapsed as Firecracker's sanitize_uri does.
    let mut pointer = path.to_string();
    while pointer.contains("//") {
        pointer = pointer.replace("//", "/");
    }
    let not_found = || Response::new(404, format!("Resource not found: {path}."));
    match request.method.as_str() {
        "GET" => match request.token() {
            None => Response::new(401, "No MMDS token provided."),
            Some(t) if !state.tokens.contains_key(t) => Response::new(401, "MMDS token not valid."),
            Some(_) => {
                let pointer = pointer.strip_suffix('/').unwrap_or(&pointer);
                match state.data.pointer(pointer) {
                    None => not_found(),
                    Some(value) => get(request, value),
                }
            }
        },
        "PUT" if state.refuse_tokens => Response {
            headers: vec![("Allow", "GET".into())],
            ..Response::new(405, "Not allowed HTTP method.")
        },
        "PUT" if request.header("x-forwarded-for").is_some() => {
            Response::new(400, "Unsupported header name: X-Forwarded-For.")
        }
        "PUT" if pointer != TOKEN_PATH => not_found(),
        "PUT" => match ttl {
            None => Response::new(400, "Token time to live value not found."),
            Some(ttl) if !TTL_SECONDS.contains(&ttl) => {
                Response::new(400, format!("Invalid time to live value: {ttl}."))
            }
            Some(ttl) => {
                let token = random_token();
                let expiry = now + Duration::from_secs(ttl);
                state.tokens.insert(token.clone(), expiry);
                Response::new(200, token)
            }
        },
        _ => Response {
            headers: vec![("Allow", "GET, PUT".into())],
            ..Response::new(405, "Not allowed HTTP method.")
        },
    }
}

/// `value` as JSON if the request accepts it, else in IMDS text.
fn get(request: &Request, value: &Value) -> Response {
    let json = request
        .header("accept")
        .is_some_and(|a| a.contains("application/json"));
    match value {
        v if json => Response {
            content_type: "application/json",
            ..Response::new(200, v.to_string())
        },
        Value::Object(map) => {
            let keys = map.iter().map(|(k, v)| match v {
                Value::Object(_) => format!("{k}/"),
                _ => k.clone(),
            });
            Response::new(200, keys.collect::<Vec<_>>().join("\n"))
        }
        Value::String(s) => Response::new(200, s.clone()),
        _ => Response::new(501, "The value has an unsupported type."),
    }
}

/// 48 hex digits from the kernel's random pool: a guest cannot guess one.
fn random_token() -> String {
    let mut bytes = [0u8; 24];
    if let Err(e) = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)) {
        panic!("cannot read /dev/urandom: {e}");
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Not Implemented",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A status, the headers (names lowercased) and the body of one response.
    type Answer = (u16, Vec<(String, String)>, String);

    /// Sends `request` on `s` and reads one response, delimited by its Content-Length.
    fn ask(s: &mut BufReader<TcpStream>, request: &str) -> Answer {
        s.get_mut().write_all(request.as_bytes()).unwrap();
        let mut status = String::new();
        s.read_line(&mut status).unwrap();
        let code = status.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            s.read_line(&mut line).unwrap();
            match line.trim_end().split_once(": ") {
                Some((n, v)) => headers.push((n.to_ascii_lowercase(), v.to_string())),
                None => break,
            }
        }
        let len = headers.iter().find(|(n, _)| n == "content-length");
        let mut body = vec![0; len.unwrap().1.parse().unwrap()];
        s.read_exact(&mut body).unwrap();
        (code, headers, String::from_utf8(body).unwrap())
    }

    fn connect(server: &Server) -> BufReader<TcpStream> {
        let s = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        BufReader::new(s)
    }

    fn header<'a>(answer: &'a Answer, name: &str) -> Option<&'a str> {
        answer
            .1
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    const PUT: &str = "PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 60\r\n\r\n";

    fn get(path: &str, token: &str) -> String {
        format!(
            "GET {path} HTTP/1.1\r\nAccept: application/json\r\nX-metadata-token: {token}\r\n\r\n"
        )
    }

    fn data() -> Value {
        json!({"lupine": {"hostname": "mmds-host", "env": ["A=1"]}, "latest": "x"})
    }

    #[test]
    fn token_then_json_on_one_connection() {
        let server = Server::start(data()).unwrap();
        let mut s = connect(&server);
        let put = ask(&mut s, PUT);
        assert_eq!(
            (put.0, header(&put, "content-type")),
            (200, Some("text/plain"))
        );
        let token = put.2;
        assert_eq!(token.len(), 48);

        let got = ask(&mut s, &get("/lupine", &token));
        assert_eq!(got.0, 200, "{got:?}");
        assert_eq!(header(&got, "content-type"), Some("application/json"));
        assert_eq!(
            serde_json::from_str::<Value>(&got.2).unwrap(),
            data()["lupine"]
        );
        // A pointer into it, `//` and a trailing `/`, and the whole store.
        assert_eq!(ask(&mut s, &get("/lupine//env/0/", &token)).2, r#""A=1""#);
        let all = ask(&mut s, &get("/", &token));
        assert_eq!(serde_json::from_str::<Value>(&all.2).unwrap(), data());

        assert_eq!(server.connections(), 1);
        let requests = server.requests();
        assert_eq!(requests.len(), 4);
        assert_eq!(
            (requests[0].method.as_str(), requests[0].path.as_str()),
            ("PUT", TOKEN_PATH)
        );
        assert_eq!(
            requests[0].header("X-METADATA-TOKEN-TTL-SECONDS"),
            Some("60")
        );
        assert!(requests[1..]
            .iter()
            .all(|r| r.token() == Some(token.as_str())));
        assert!(server.errors().is_empty());
    }

    #[test]
    fn get_without_a_valid_token_is_unauthorized() {
        let server = Server::start(data()).unwrap();
        let mut s = connect(&server);
        let no_token = "GET /lupine HTTP/1.1\r\nAccept: application/json\r\n\r\n";
        assert_eq!(ask(&mut s, no_token).0, 401);
        assert_eq!(ask(&mut s, &get("/lupine", "made-up")).0, 401);
        assert_eq!(server.requests()[0].token(), None);
        // A token lives for its TTL only.
        let put =
            "PUT /latest/api/token HTTP/1.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 1\r\n\r\n";
        let token = ask(&mut s, put).2;
        assert_eq!(ask(&mut s, &get("/lupine", &token)).0, 200);
        thread::sleep(Duration::from_millis(1100));
        assert_eq!(ask(&mut s, &get("/lupine", &token)).0, 401);
    }

    #[test]
    fn missing_paths_bad_ttls_and_methods() {
        let server = Server::start(data()).unwrap();
        let mut s = connect(&server);
        let token = ask(&mut s, PUT).2;
        assert_eq!(ask(&mut s, &get("/lupine/nothing", &token)).0, 404);
        for ttl in ["0", "21601", "-1", "soon"] {
            let put = format!(
                "PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: {ttl}\r\n\r\n"
            );
            assert_eq!(ask(&mut s, &put).0, 400, "ttl {ttl}");
        }
        let max = "PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 21600\r\n\r\n";
        assert_eq!(ask(&mut s, max).0, 200);
        assert_eq!(ask(&mut s, "PUT /latest/api/token HTTP/1.1\r\n\r\n").0, 400);
        let elsewhere = "PUT /lupine HTTP/1.1\r\nX-metadata-token-ttl-seconds: 60\r\n\
                         Content-Length: 2\r\n\r\n{}";
        assert_eq!(ask(&mut s, elsewhere).0, 404);
        let forwarded = "PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 60\r\n\
                         X-Forwarded-For: 1.2.3.4\r\n\r\n";
        assert_eq!(ask(&mut s, forwarded).0, 400);
        let delete = ask(&mut s, "DELETE /lupine HTTP/1.1\r\n\r\n");
        assert_eq!(
            (delete.0, header(&delete, "allow")),
            (405, Some("GET, PUT"))
        );
        // IMDS text without `Accept: application/json`.
        let imds = |path: &str| format!("GET {path} HTTP/1.1\r\nX-metadata-token: {token}\r\n\r\n");
        // In the data store's key order, which serde_json's preserve_order feature (on when
        // the workspace builds lupine-init too) decides.
        let mut keys: Vec<String> = ask(&mut s, &imds("/"))
            .2
            .lines()
            .map(String::from)
            .collect();
        keys.sort();
        assert_eq!(keys, ["latest", "lupine/"]);
        assert_eq!(ask(&mut s, &imds("/lupine/hostname")).2, "mmds-host");
        assert_eq!(ask(&mut s, &imds("/lupine/env")).0, 501);
    }

    #[test]
    fn connection_close_and_http_1_0_end_the_connection() {
        let server = Server::start(data()).unwrap();
        for request in [
            "PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 5\r\n\
             Connection: close\r\n\r\n",
            "PUT /latest/api/token HTTP/1.0\r\nX-metadata-token-ttl-seconds: 5\r\n\r\n",
        ] {
            let mut s = connect(&server);
            let answer = ask(&mut s, request);
            assert_eq!(
                (answer.0, header(&answer, "connection")),
                (200, Some("close"))
            );
            let mut rest = Vec::new();
            assert_eq!(s.read_to_end(&mut rest).unwrap(), 0);
        }
        assert_eq!(server.connections(), 2);
    }

    #[test]
    fn malformed_requests_are_recorded_not_served() {
        let server = Server::start(data()).unwrap();
        let mut s = connect(&server);
        s.get_mut()
            .write_all(b"\x16\x03\x01 hello\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        let mut s = connect(&server);
        s.get_mut()
            .write_all(b"GET / HTTP/1.1\r\nno colon\r\n\r\n")
            .unwrap();
        s.read_to_string(&mut answer).unwrap();
        let mut s = connect(&server);
        s.get_mut()
            .write_all(b"GET / HTTP/1.1\r\nX-metadata-token: a")
            .unwrap();
        s.get_mut().shutdown(Shutdown::Write).unwrap();
        s.read_to_string(&mut answer).unwrap();
        let mut s = connect(&server);
        s.get_mut()
            .write_all(&vec![b'a'; MAX_HEAD as usize + 10])
            .unwrap();
        s.read_to_string(&mut answer).unwrap();

        let errors = server.errors();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("bad request line"), "{errors:?}");
        assert!(errors[1].starts_with("bad header line"), "{errors:?}");
        assert!(
            errors[2].starts_with("connection closed inside"),
            "{errors:?}"
        );
        assert!(errors[3].starts_with("request head longer"), "{errors:?}");
        assert!(server.requests().is_empty());
    }

    #[test]
    fn a_refusing_server_gives_no_token() {
        let server = Server::start_refusing_tokens(data()).unwrap();
        let mut s = connect(&server);
        let put = ask(&mut s, PUT);
        assert_eq!((put.0, header(&put, "allow")), (405, Some("GET")));
        assert_eq!(ask(&mut s, &get("/lupine", &put.2)).0, 401);
        let seen = server.wait_for(|r| r.method == "GET", Duration::from_secs(1));
        assert_eq!(seen.unwrap().path, "/lupine");
    }
}
