//! A real SMTP server for the tests: it speaks SMTP over TCP (greeting, EHLO, MAIL, RCPT, DATA,
//! QUIT) on a free port and keeps every message it accepts. It can refuse: a recipient whose address
//! starts with `reject` gets a permanent 550, and the next `busy` messages get a passing 451.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent (headers and body), dot-unstuffed.
    pub data: String,
}

impl Mail {
    /// The message, parsed as a mail client would.
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(self.data.as_bytes())
            .expect("a message the sink accepted parses")
    }

    pub fn subject(&self) -> String {
        self.parsed().subject().unwrap_or_default().to_owned()
    }

    /// The text part, decoded.
    pub fn text(&self) -> String {
        self.parsed().body_text(0).unwrap_or_default().into_owned()
    }
}

#[derive(Default)]
struct Inbox {
    mails: Vec<Mail>,
    busy: u32,
    /// Messages turned away with a 451.
    turned_away: u32,
    sessions: u32,
}

pub struct SmtpSink {
    pub addr: SocketAddr,
    inbox: Arc<Mutex<Inbox>>,
}

impl SmtpSink {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let shared = inbox.clone();
        // The threads end with the test process. Each session has its own, as a client may keep
        // an idle session open (lettre pools them) while it opens another.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let inbox = shared.clone();
                std::thread::spawn(move || session(stream, &inbox));
            }
        });
        Self { addr, inbox }
    }

    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// The next `messages` are turned away with a passing 451 (counted per `MAIL` command, so a
    /// session the client keeps open is turned away too while the server is busy).
    pub fn busy_for(&self, messages: u32) {
        self.inbox.lock().unwrap().busy = messages;
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.inbox.lock().unwrap().mails.clone()
    }

    /// How many messages were turned away with a 451 so far.
    pub fn turned_away(&self) -> u32 {
        self.inbox.lock().unwrap().turned_away
    }

    pub fn sessions(&self) -> u32 {
        self.inbox.lock().unwrap().sessions
    }
}

fn session(stream: TcpStream, inbox: &Mutex<Inbox>) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    inbox.lock().unwrap().sessions += 1;
    let busy = || {
        let mut inbox = inbox.lock().unwrap();
        let busy = inbox.busy > 0;
        inbox.busy = inbox.busy.saturating_sub(1);
        inbox.turned_away += u32::from(busy);
        busy
    };
    out.write_all(b"220 sink.test ESMTP ready\r\n")?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let answer: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" => b"250-sink.test\r\n250 8BITMIME\r\n",
            "MAIL" if busy() => b"451 4.3.2 try again later\r\n",
            "MAIL" => {
                from = address(&command);
                to.clear();
                b"250 2.1.0 ok\r\n"
            }
            "RCPT" if address(&command).starts_with("reject") => b"550 5.1.1 no such mailbox\r\n",
            "RCPT" => {
                to.push(address(&command));
                b"250 2.1.5 ok\r\n"
            }
            "DATA" => {
                out.write_all(b"354 end with <CRLF>.<CRLF>\r\n")?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                inbox.lock().unwrap().mails.push(Mail {
                    from: from.clone(),
                    to: to.clone(),
                    data,
                });
                b"250 2.0.0 queued\r\n"
            }
            "QUIT" => {
                out.write_all(b"221 2.0.0 bye\r\n")?;
                return Ok(());
            }
            "RSET" | "NOOP" => b"250 2.0.0 ok\r\n",
            _ => b"502 5.5.2 not implemented\r\n",
        };
        out.write_all(answer)?;
    }
}

/// The address in `MAIL FROM:<a@b>` or `RCPT TO:<a@b>`.
fn address(command: &str) -> String {
    command
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(address, _)| address.to_owned())
        .unwrap_or_default()
}
