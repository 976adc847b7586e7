//! Matrix errors for the answers hyper's HTTP/1 code gives by itself.
//!
//! A request hyper cannot parse never reaches the pipeline: a malformed request line or
//! header (a raw space in the URL, a bad `Content-Length`) gets 400, a URI over 65,534
//! bytes 414, a head over the buffer or header-count limit 431. hyper writes those as a
//! bodiless `connection: close` answer and closes the connection, with no hook to change
//! them. [`MatrixParseErrors`] sits between hyper and the socket, recognises such an answer
//! as it is written and sends a Matrix error (`M_UNKNOWN` for 400, as Synapse answers a
//! malformed `Content-Length`; `M_TOO_LARGE` for 414 and 431) in its place.
//!
//! A write is replaced only when it is exactly such a head: one of the three statuses, and
//! nothing but hyper's own `connection: close`, `content-length: 0` and `date` headers. No
//! head of ours matches (each carries a `content-type` and a body); a body could only if it
//! were byte for byte such a head, dated this second, and went out in a write of its own.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::StatusCode;
use ruma::api::error::ErrorKind;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{ApiError, CORS_HEADERS};

/// The longest request target hyper's HTTP/1 parser accepts.
const MAX_URI_BYTES: usize = 65_534;

/// An HTTP/1 connection's byte stream, with hyper's bodiless parse-error answers turned
/// into Matrix errors.
pub struct MatrixParseErrors<S> {
    inner: S,
    /// Whether answers carry the CORS headers (the client API's listener).
    cors: bool,
    /// The answer written in place of hyper's, and how much of it has gone out.
    replacement: Option<(Vec<u8>, usize)>,
}

impl<S> MatrixParseErrors<S> {
    pub fn new(inner: S, cors: bool) -> Self {
        Self { inner, cors, replacement: None }
    }
}

impl<S: AsyncWrite + Unpin> MatrixParseErrors<S> {
    /// Sends what is left of a replacement answer.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, sent)) = &mut self.replacement {
            if *sent == bytes.len() {
                self.replacement = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `written` in place of the socket when it is hyper's own parse-error answer.
    /// hyper flushes and shuts the connection down next, which sends the replacement.
    fn intercept(&mut self, written: &[u8]) -> bool {
        match replacement_for(written, self.cors) {
            Some(answer) => {
                self.replacement = Some((answer, 0));
                true
            }
            None => false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for MatrixParseErrors<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for MatrixParseErrors<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        if this.intercept(buf) {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        let mut written = bufs.iter().filter(|buf| !buf.is_empty());
        if let (Some(only), None) = (written.next(), written.next())
            && this.intercept(only)
        {
            return Poll::Ready(Ok(only.len()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// The Matrix error to send instead of `written`, if `written` is exactly one of hyper's
/// parse-error answers: `HTTP/1.1 <400|414|431> <reason>`, then only `connection: close`,
/// `content-length: 0` and `date`, in any order, and the end of the head.
fn replacement_for(written: &[u8], cors: bool) -> Option<Vec<u8>> {
    let head = std::str::from_utf8(written).ok()?.strip_suffix("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status = status_line.strip_prefix("HTTP/1.1 ")?.get(..3)?;
    let error = match status {
        "400" => ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorKind::Unknown,
            "The request is not valid HTTP: check the request line and headers",
        ),
        "414" => ApiError::uri_too_long(MAX_URI_BYTES),
        "431" => ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorKind::TooLarge,
            "The request headers are larger or more numerous than this server accepts",
        ),
        _ => return None,
    };
    let (mut closes, mut empty, mut date) = (false, false, None);
    for line in lines {
        let (name, value) = line.split_once(": ")?;
        match name.to_ascii_lowercase().as_str() {
            "connection" if value == "close" => closes = true,
            "content-length" if value == "0" => empty = true,
            "date" => date = Some(value),
            _ => return None,
        }
    }
    let date = date.filter(|_| closes && empty)?;
    let body = error.into_json_body();
    let mut answer = format!(
        "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\ndate: {date}\r\n",
        body.len()
    );
    if cors {
        for (name, value) in CORS_HEADERS {
            answer.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    answer.push_str("\r\n");
    let mut answer = answer.into_bytes();
    answer.extend_from_slice(&body);
    Some(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "Sat, 05 Dec 2026 07:26:02 GMT";

    fn hyper_answer(status: &str) -> String {
        format!("HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: 0\r\ndate: {DATE}\r\n\r\n")
    }

    fn body_of(answer: &[u8]) -> serde_json::Value {
        let text = std::str::from_utf8(answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize =
            head.lines().find_map(|line| line.strip_prefix("content-length: ")).unwrap().parse().unwrap();
        assert_eq!(length, body.len());
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn hyper_parse_error_answers_become_matrix_errors() {
        for (status, errcode) in [
            ("400 Bad Request", "M_UNKNOWN"),
            ("414 URI Too Long", "M_TOO_LARGE"),
            ("431 Request Header Fields Too Large", "M_TOO_LARGE"),
        ] {
            let answer = replacement_for(hyper_answer(status).as_bytes(), true).unwrap();
            let text = String::from_utf8(answer.clone()).unwrap();
            assert!(text.starts_with(&format!("HTTP/1.1 {status}\r\n")), "{text}");
            assert!(text.contains(&format!("date: {DATE}\r\n")), "{text}");
            assert!(text.contains("access-control-allow-origin: *\r\n"), "{text}");
            assert_eq!(body_of(&answer)["errcode"], errcode);
        }
        let plain =
            String::from_utf8(replacement_for(hyper_answer("400 Bad Request").as_bytes(), false).unwrap());
        assert!(!plain.unwrap().contains("access-control"));
    }

    #[test]
    fn anything_else_is_left_alone() {
        let not_hyper = [
            // Other statuses, ours or hyper's.
            hyper_answer("404 Not Found"),
            hyper_answer("500 Internal Server Error"),
            // A head with a body after it, or any header hyper does not add.
            format!("{}{{}}", hyper_answer("400 Bad Request")),
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n\
             content-length: 0\r\ndate: x\r\n\r\n"
                .to_owned(),
            // Without closing, or with a length.
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: {DATE}\r\n\r\n"),
            format!(
                "HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 2\r\ndate: {DATE}\r\n\r\n"
            ),
            // Part of a head, or a body that merely starts like one.
            "HTTP/1.1 400 Bad Request\r\nconnection: close\r\n".to_owned(),
            "not HTTP at all".to_owned(),
        ];
        for written in not_hyper {
            assert!(replacement_for(written.as_bytes(), true).is_none(), "{written:?}");
        }
    }
}
