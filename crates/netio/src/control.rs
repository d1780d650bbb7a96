//! One JSON object per line over a Unix stream socket: the agent's control socket and the
//! gateway's admin socket both speak it. The socket's side binds with [`bind`] and checks each
//! caller with [`crate::peer`]; the CLI's side sends one request and reads one reply with
//! [`call`]. Lines are bounded on both sides: what a daemon reads from any caller by
//! [`MAX_LINE`], a reply from the daemon by [`MAX_REPLY_LINE`] (a gateway's list of ten
//! thousand sessions is megabytes).

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Longest request line a daemon accepts from a caller.
pub const MAX_LINE: usize = 1 << 20;

/// Longest reply line [`call`] accepts from its daemon: about 500 bytes per gateway session,
/// so room for a hundred thousand.
pub const MAX_REPLY_LINE: usize = 64 << 20;

/// How long a caller waits for the reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads one line of at most [`MAX_LINE`] bytes; `Ok(None)` at end of stream.
pub fn read_line(reader: &mut impl BufRead) -> io::Result<Option<String>> {
    read_line_within(reader, MAX_LINE)
}

fn read_line_within(reader: &mut impl BufRead, max: usize) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = io::Read::take(&mut *reader, max as u64 + 1).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.len() > max {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))
}

/// One request, one reply, over a fresh connection to `socket`; `daemon` names what listens
/// there in errors (e.g. "the agent (is `aovpn agent` running?)").
pub fn call<Request: Serialize, Reply: DeserializeOwned>(
    socket: &Path,
    request: &Request,
    daemon: &str,
) -> io::Result<Reply> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot reach {daemon} at {}: {e}", socket.display()),
        )
    })?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    let mut text = serde_json::to_string(request).map_err(io::Error::other)?;
    text.push('\n');
    // A daemon that refuses the caller answers before reading the request: its answer is
    // what to report, not the broken pipe.
    let written = stream.write_all(text.as_bytes());
    let mut reader = BufReader::new(stream);
    let line = match (read_line_within(&mut reader, MAX_REPLY_LINE), written) {
        (Ok(Some(line)), _) => line,
        (_, Err(e)) | (Err(e), Ok(())) => return Err(e),
        (Ok(None), Ok(())) => {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{daemon} closed"),
            ));
        }
    };
    serde_json::from_str(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Binds the socket at `path` (its directory created): a stale socket of a daemon that died
/// is replaced, a live one refused (`AddrInUse`); then mode `mode`. Who may do what is decided
/// per request from the caller's credentials ([`crate::peer`]), not by the file's mode (a
/// daemon that runs without CAP_CHOWN could not give the socket to an admin group anyway).
/// Must be called inside a tokio runtime.
pub fn bind(path: &Path, mode: u32) -> io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{}: another daemon is listening there", path.display()),
        ));
    }
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn overlong_lines_are_refused() {
        let big = vec![b'x'; MAX_LINE + 10];
        let mut reader = BufReader::new(&big[..]);
        assert!(read_line(&mut reader).is_err());
        let mut ok = BufReader::new(&b"{\"op\":\"list\"}\nrest"[..]);
        assert_eq!(read_line(&mut ok).unwrap().unwrap(), "{\"op\":\"list\"}\n");
    }

    /// A reply larger than any request may be (a gateway's ten thousand sessions) still reads.
    #[test]
    fn a_caller_takes_a_reply_longer_than_a_request_may_be() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let big = "s".repeat(4 * MAX_LINE);
        let reply = big.clone();
        let daemon = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let request = read_line(&mut reader).unwrap().unwrap();
            let mut out = stream;
            let mut line = serde_json::to_string(&reply).unwrap();
            line.push('\n');
            out.write_all(line.as_bytes()).unwrap();
            request
        });
        let got: String = call(&path, &"sessions", "the daemon").unwrap();
        assert_eq!(got.len(), big.len());
        assert_eq!(daemon.join().unwrap(), "\"sessions\"\n");
    }
}
