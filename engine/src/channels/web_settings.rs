//! The rules of a web channel's settings ([`ChannelDraft::check`] for `--kind web`): at least one
//! allowed origin, at most [`MAX_ORIGINS`], each an origin ([`Origin::parse`]); none of the
//! generic kind's settings (the visitors' sessions authenticate its requests, and replies go
//! to the page) nor a platform's. The session key is the stored one when the settings are
//! replaced ([`ChannelDraft::session_key`]), else a new one.

use super::platform_settings::{given_generic_fields, given_platform_fields, refuse_given};
use super::{ChannelDraft, Field, Problem};
use crate::web_chat::{MAX_ORIGINS, Origin, SessionKey, WebChat};

/// The web chat of `draft`, each broken rule pushed to `problems`.
pub(super) fn check(draft: ChannelDraft, problems: &mut Vec<Problem>) -> Option<WebChat> {
    refuse_given(&given_generic_fields(&draft), problems, |label| {
        format!(
            "a web channel's visitors are authenticated by the sessions Tern gives their pages, and replies go to the page: it has no {label}; leave it out"
        )
    });
    let platform: Vec<(Field, bool)> =
        given_platform_fields(&draft).into_iter().filter(|(f, _)| *f != Field::Origins).collect();
    refuse_given(&platform, problems, |label| format!("a web channel has no {label}; leave it out"));
    if draft.origins.is_empty() {
        problems.push(Problem::at(
            Field::Origins,
            "a web channel needs the origin of the pages that embed the chat, e.g. https://www.example.com (several are fine); pages of other origins get nothing",
        ));
    }
    if draft.origins.len() > MAX_ORIGINS {
        problems.push(Problem::at(Field::Origins, format!("at most {MAX_ORIGINS} origins")));
    }
    let mut origins: Vec<Origin> = Vec::new();
    for text in &draft.origins {
        match Origin::parse(text) {
            Ok(o) if !origins.contains(&o) => origins.push(o),
            Ok(_) => {}
            Err(e) => problems.push(Problem::at(Field::Origins, e.to_string())),
        }
    }
    let session_key = draft.session_key.unwrap_or_else(SessionKey::generate);
    (!origins.is_empty()).then_some(WebChat { origins, session_key, same_origin: false })
}
