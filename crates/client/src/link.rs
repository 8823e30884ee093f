//! Invite links: `{base}/join#t=<token>&k=<invite secret>&m=<mediator IK>`, everything in the
//! fragment (browsers never send it to a server). A bare token is accepted too. Fields it does
//! not know are ignored, so a link can carry more for the page that opens it: the web client's
//! `w` (the mediator's waiting-room message, web-client/src/app/waiting.ts).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use confer_e2ee::secret::Secret32;

/// What an invite carries.
#[derive(Debug, Clone)]
pub struct Invite {
    /// The signalling token.
    pub token: String,
    /// The invite secret (HPKE PSK with the mediator), if the link has one.
    pub psk: Option<Secret32>,
    /// The mediator's identity key, pinned by the link.
    pub mediator_ik: Option<[u8; 32]>,
}

impl Invite {
    /// Parses a link or a bare token.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let Some((_, fragment)) = s.split_once('#') else {
            return Ok(Self {
                token: s.to_owned(),
                psk: None,
                mediator_ik: None,
            });
        };
        let mut token = None;
        let mut psk = None;
        let mut mediator_ik = None;
        for part in fragment.split('&') {
            let (k, v) = part
                .split_once('=')
                .ok_or("invite link: malformed fragment")?;
            match k {
                "t" => token = Some(v.to_owned()),
                "k" => {
                    psk = Some(Secret32::new(
                        decode32(v).ok_or("invite link: bad invite secret")?,
                    ))
                }
                "m" => mediator_ik = Some(decode32(v).ok_or("invite link: bad mediator key")?),
                _ => {}
            }
        }
        Ok(Self {
            token: token.ok_or("invite link: no token (t=)")?,
            psk,
            mediator_ik,
        })
    }

    /// Formats a link.
    pub fn link(&self, base: &str) -> String {
        let mut s = format!("{base}/join#t={}", self.token);
        if let Some(p) = &self.psk {
            s.push_str(&format!("&k={}", B64.encode(p.expose())));
        }
        if let Some(m) = &self.mediator_ik {
            s.push_str(&format!("&m={}", B64.encode(m)));
        }
        s
    }
}

fn decode32(v: &str) -> Option<[u8; 32]> {
    B64.decode(v.as_bytes()).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA"; // bytes 1..=32

    #[test]
    fn unknown_fields_such_as_the_waiting_room_message_are_ignored() {
        let plain = Invite::parse(&format!("http://h/join#t=tok&k={KEY}&m={KEY}")).unwrap();
        for extra in [
            "&w=VGhlIG1lZGlhdG9yIHdpbGwgam9pbiBhdCB0ZW4u",
            "&w=",
            "&future=1",
        ] {
            let link = format!("http://h/join#t=tok&k={KEY}&m={KEY}{extra}");
            let invite = Invite::parse(&link).unwrap();
            assert_eq!(invite.token, "tok");
            assert_eq!(
                invite.psk.map(|p| *p.expose()),
                plain.psk.as_ref().map(|p| *p.expose())
            );
            assert_eq!(invite.mediator_ik, plain.mediator_ik);
        }
        let first = Invite::parse("http://h/join#w=VGVu&t=tok").unwrap();
        assert_eq!(first.token, "tok");
    }
}
