//! The bytes of HotSpot's attach protocol (Linux: a Unix stream socket `/tmp/.java_pid<pid>`).
//!
//! Request, protocol 1 (every HotSpot since JDK 6): NUL-terminated strings
//! `1\0<command>\0<arg0>\0<arg1>\0<arg2>\0`, always three arguments (empty ones are just
//! `\0`); a command of at most 16 bytes, arguments of at most 1024. A longer request is not
//! answered: the JVM closes the connection.
//!
//! Request, protocol 2 (JDK 24 and later, when `getversion` answers `2`):
//! `2\0<size>\0<command>\0<arg>\0…` where `<size>` is the decimal length of everything after
//! its own `\0`; any number of arguments, each of any length (256 KiB in all).
//!
//! Answer, both protocols: a decimal status and `\n` (0 = the JVM ran the command, JNI_ERR
//! -1 = it did not, 101 = bad protocol version), then the command's text until the JVM closes
//! the connection.

/// Longest command name in a protocol-1 request.
pub const V1_NAME_MAX: usize = 16;
/// Longest argument in a protocol-1 request.
pub const V1_ARG_MAX: usize = 1024;
/// Largest protocol-2 request body the JVM accepts.
pub const V2_SIZE_MAX: usize = 256 * 1024;

/// Status the JVM answers to a protocol version it does not speak.
pub const ATTACH_ERROR_BADVERSION: i32 = 101;

/// Why a request cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// A string holds a NUL byte (it would end the field early).
    Nul,
    /// Too long for protocol 1 (and protocol 2 was not offered).
    TooLongV1 { what: &'static str, max: usize },
    /// More than three arguments for protocol 1.
    TooManyArgsV1,
    /// Too long even for protocol 2.
    TooLongV2,
}

fn check_nul(s: &str) -> Result<(), EncodeError> {
    if s.as_bytes().contains(&0) {
        Err(EncodeError::Nul)
    } else {
        Ok(())
    }
}

/// `1\0cmd\0a0\0a1\0a2\0`.
pub fn encode_v1(command: &str, args: &[&str]) -> Result<Vec<u8>, EncodeError> {
    if args.len() > 3 {
        return Err(EncodeError::TooManyArgsV1);
    }
    if command.len() > V1_NAME_MAX {
        return Err(EncodeError::TooLongV1 {
            what: "command name",
            max: V1_NAME_MAX,
        });
    }
    check_nul(command)?;
    let mut out = b"1\0".to_vec();
    out.extend_from_slice(command.as_bytes());
    out.push(0);
    for i in 0..3 {
        let arg = args.get(i).copied().unwrap_or("");
        check_nul(arg)?;
        if arg.len() > V1_ARG_MAX {
            return Err(EncodeError::TooLongV1 {
                what: "argument",
                max: V1_ARG_MAX,
            });
        }
        out.extend_from_slice(arg.as_bytes());
        out.push(0);
    }
    Ok(out)
}

/// `2\0<size>\0cmd\0a0\0…`.
pub fn encode_v2(command: &str, args: &[&str]) -> Result<Vec<u8>, EncodeError> {
    let mut body = Vec::new();
    for s in std::iter::once(command).chain(args.iter().copied()) {
        check_nul(s)?;
        body.extend_from_slice(s.as_bytes());
        body.push(0);
    }
    if body.len() > V2_SIZE_MAX {
        return Err(EncodeError::TooLongV2);
    }
    let mut out = format!("2\0{}\0", body.len()).into_bytes();
    out.extend_from_slice(&body);
    Ok(out)
}

/// Whether a request fits protocol 1.
pub fn fits_v1(command: &str, args: &[&str]) -> bool {
    command.len() <= V1_NAME_MAX && args.len() <= 3 && args.iter().all(|a| a.len() <= V1_ARG_MAX)
}

/// A complete answer: the status line and the text after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: i32,
    pub text: String,
}

/// Why an answer is not a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// The connection closed before any byte.
    Empty,
    /// The first line is not a decimal status.
    BadStatus(String),
}

/// Split a whole answer into status and text.
pub fn parse_reply(bytes: &[u8]) -> Result<Reply, ReplyError> {
    if bytes.is_empty() {
        return Err(ReplyError::Empty);
    }
    let (line, rest) = match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[][..]),
    };
    let line = String::from_utf8_lossy(line);
    let status = line
        .trim()
        .parse::<i32>()
        .map_err(|_| ReplyError::BadStatus(line.chars().take(80).collect()))?;
    Ok(Reply {
        status,
        text: String::from_utf8_lossy(rest).into_owned(),
    })
}

/// The JVM's text folded into one line: lines trimmed, empty ones dropped, joined by "; ".
pub fn one_line(text: &str) -> String {
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if joined.is_empty() {
        "(no message)".to_string()
    } else {
        joined
    }
}

/// What a `load` answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadOutcome {
    /// `Agent_OnAttach` ran and returned this.
    Returned(i32),
    /// Dynamic agent loading is off (`-XX:-EnableDynamicAgentLoading`, JDK 21+).
    DynamicLoadingDisabled,
    /// The library was not loaded or has no `Agent_OnAttach`: the JVM's text.
    Failed(String),
}

/// Interpret a `load` reply.
///
/// - JDK 9–20: status 0 and `return code: N` when `Agent_OnAttach` ran; status -1 and the
///   reason (`Agent_OnAttach is not available in …`, `… was not loaded.`) otherwise.
/// - JDK 21+: status 0 in every case; `return code: N` when the agent ran, else the reason.
/// - JDK 8: status 0 and the bare number.
pub fn parse_load(reply: &Reply) -> LoadOutcome {
    let text = reply.text.trim();
    if text.contains("EnableDynamicAgentLoading") && text.contains("not enabled") {
        return LoadOutcome::DynamicLoadingDisabled;
    }
    if reply.status == 0 {
        let first = text.lines().next().unwrap_or("").trim();
        let number = first.strip_prefix("return code:").unwrap_or(first).trim();
        if let Ok(rc) = number.parse::<i32>() {
            return LoadOutcome::Returned(rc);
        }
    }
    LoadOutcome::Failed(one_line(text))
}

/// Whether a failed jcmd's text says the command does not exist.
pub fn is_unknown_command(reply: &Reply) -> bool {
    reply.status != 0
        && (reply.text.contains("Unknown diagnostic command")
            || (reply.text.starts_with("Operation ") && reply.text.contains("not recognized")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_request_bytes() {
        assert_eq!(
            encode_v1("jcmd", &["VM.version"]).unwrap(),
            b"1\0jcmd\0VM.version\0\0\0".to_vec()
        );
        assert_eq!(
            encode_v1("load", &["/x/libA.so", "true", "k=v"]).unwrap(),
            b"1\0load\0/x/libA.so\0true\0k=v\0".to_vec()
        );
        assert_eq!(encode_v1("jcmd", &["a\0b"]), Err(EncodeError::Nul));
        assert_eq!(
            encode_v1("jcmd", &["a", "b", "c", "d"]),
            Err(EncodeError::TooManyArgsV1)
        );
        let long = "x".repeat(1025);
        assert!(matches!(
            encode_v1("jcmd", &[&long]),
            Err(EncodeError::TooLongV1 { max: 1024, .. })
        ));
        assert!(encode_v1("jcmd", &[&long[..1024]]).is_ok());
        assert!(!fits_v1("jcmd", &[&long]));
        assert!(fits_v1("jcmd", &["VM.version"]));
    }

    #[test]
    fn v2_request_bytes() {
        assert_eq!(
            encode_v2("jcmd", &["VM.version"]).unwrap(),
            b"2\x0016\0jcmd\0VM.version\0".to_vec()
        );
        assert_eq!(
            encode_v2("getversion", &[]).unwrap(),
            b"2\x0011\0getversion\0"
        );
        let huge = "x".repeat(V2_SIZE_MAX);
        assert_eq!(encode_v2("jcmd", &[&huge]), Err(EncodeError::TooLongV2));
    }

    #[test]
    fn replies() {
        let r = parse_reply(b"0\nOpenJDK 64-Bit Server VM version 17\n").unwrap();
        assert_eq!(r.status, 0);
        assert_eq!(r.text, "OpenJDK 64-Bit Server VM version 17\n");
        let r = parse_reply(b"-1\nOperation bogus not recognized!").unwrap();
        assert_eq!(r.status, -1);
        assert!(is_unknown_command(&r));
        let r =
            parse_reply(b"-1\njava.lang.IllegalArgumentException: Unknown diagnostic command\n")
                .unwrap();
        assert!(is_unknown_command(&r));
        assert_eq!(parse_reply(b"101").unwrap().status, 101);
        assert_eq!(parse_reply(b""), Err(ReplyError::Empty));
        assert!(matches!(
            parse_reply(b"HTTP/1.1 400\n"),
            Err(ReplyError::BadStatus(_))
        ));
    }

    fn load(bytes: &[u8]) -> LoadOutcome {
        parse_load(&parse_reply(bytes).unwrap())
    }

    #[test]
    fn load_answers() {
        // Observed on JDK 17.0.15 and JDK 25.0.3.
        assert_eq!(load(b"0\nreturn code: 0\n"), LoadOutcome::Returned(0));
        assert_eq!(load(b"0\nreturn code: 7\n"), LoadOutcome::Returned(7));
        assert_eq!(
            load(b"-1\nAgent_OnAttach is not available in /x/libzip.so\n"),
            LoadOutcome::Failed("Agent_OnAttach is not available in /x/libzip.so".into())
        );
        assert_eq!(
            load(b"0\nAgent_OnAttach is not available in /x/libzip.so\n"),
            LoadOutcome::Failed("Agent_OnAttach is not available in /x/libzip.so".into())
        );
        assert_eq!(
            load(b"0\n/x/no.so was not loaded.\n/x/no.so: cannot open shared object file\n"),
            LoadOutcome::Failed(
                "/x/no.so was not loaded.; /x/no.so: cannot open shared object file".into()
            )
        );
        // JDK 8: the number alone.
        assert_eq!(load(b"0\n-3\n"), LoadOutcome::Returned(-3));
        assert_eq!(
            load(
                b"0\nDynamic agent loading is not enabled. Use -XX:+EnableDynamicAgentLoading \
                  to launch target VM.\n"
            ),
            LoadOutcome::DynamicLoadingDisabled
        );
        assert_eq!(
            load(b"-1\nDynamic agent loading is not enabled. Use -XX:+EnableDynamicAgentLoading to launch target VM."),
            LoadOutcome::DynamicLoadingDisabled
        );
        assert_eq!(load(b"0\n"), LoadOutcome::Failed("(no message)".into()));
    }
}
