//! Email nudges over SMTP (`smtp://` with STARTTLS when the server offers it and the URL asks for
//! it with `?tls=required`, `smtps://` for TLS from the first byte), text and HTML in one message.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{NotifyError, Nudge, SendError};

pub(super) struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Email {
    pub(super) fn new(url: &str, from: &str, timeout: Duration) -> Result<Self, NotifyError> {
        if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
            return Err(NotifyError::setting(
                "RECOUP_SMTP_URL",
                "an smtp:// or smtps:// URL such as smtp://127.0.0.1:1025 or \
                 smtps://user:password@smtp.example.com:465",
            ));
        }
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| {
                // lettre's message may quote the URL, and the URL may hold a password.
                let kind = if e.to_string().contains("port") {
                    "port"
                } else {
                    "URL"
                };
                NotifyError::setting("RECOUP_SMTP_URL", format!("not a usable SMTP {kind}"))
            })?
            .timeout(Some(timeout))
            .build();
        let from = from.parse().map_err(|e| {
            NotifyError::setting(
                "RECOUP_EMAIL_FROM",
                format!("{from:?} is not an email address ({e}); e.g. Acme Billing <billing@acme.example>"),
            )
        })?;
        Ok(Self { transport, from })
    }

    pub(super) async fn send(&self, nudge: &Nudge) -> Result<(), SendError> {
        let permanent = |message: String| SendError {
            message,
            passing: false,
        };
        let address = nudge.to.email.as_deref().unwrap_or_default();
        let to = Mailbox::new(
            nudge.to.name.clone(),
            address
                .parse()
                .map_err(|e| permanent(format!("{address:?} is not an email address: {e}")))?,
        );
        // The nudge's id, the same on every try: a message sent again after a lost answer (or a
        // worker that died before recording it) is one message to mail systems that recognise it.
        let message_id = format!("<{}@{}>", nudge.id, self.from.email.domain());
        let message = Message::builder()
            .message_id(Some(message_id))
            .from(self.from.clone())
            .to(to)
            .subject(&nudge.message.subject)
            .multipart(MultiPart::alternative_plain_html(
                nudge.message.text.clone(),
                nudge.message.html.clone(),
            ))
            .map_err(|e| permanent(format!("cannot build the email: {e}")))?;
        self.transport
            .send(message)
            .await
            .map(drop)
            .map_err(|e| SendError {
                message: format!("SMTP: {e}"),
                passing: !e.is_permanent(),
            })
    }
}
