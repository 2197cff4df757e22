//! The AWS CLI's shared files: `~/.aws/credentials` and `~/.aws/config`.

/// The fields shoal reads from a named profile in `~/.aws/credentials` and
/// `~/.aws/config` (`AWS_PROFILE`, else `default`; `AWS_SHARED_CREDENTIALS_FILE` and
/// `AWS_CONFIG_FILE` move them).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Profile {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

impl Profile {
    pub fn load() -> Profile {
        let name = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
        let home = std::env::var("HOME").unwrap_or_default();
        let file = |var: &str, default: &str| {
            std::env::var(var).unwrap_or_else(|_| format!("{home}/.aws/{default}"))
        };
        let mut p = Profile::default();
        if let Ok(text) =
            std::fs::read_to_string(file("AWS_SHARED_CREDENTIALS_FILE", "credentials"))
        {
            p.merge(&text, &name);
        }
        if let Ok(text) = std::fs::read_to_string(file("AWS_CONFIG_FILE", "config")) {
            // The config file names sections `[profile x]`, except `[default]`.
            let section = if name == "default" {
                name.clone()
            } else {
                format!("profile {name}")
            };
            p.merge(&text, &section);
        }
        p
    }

    /// Takes the keys of `[section]` in an INI text, keeping values already set.
    pub fn merge(&mut self, text: &str, section: &str) {
        let mut inside = false;
        for line in text.lines().map(str::trim) {
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                inside = s.trim() == section;
                continue;
            }
            let Some((k, v)) = line.split_once('=').filter(|_| inside) else {
                continue;
            };
            let slot = match k.trim() {
                "aws_access_key_id" => &mut self.access_key_id,
                "aws_secret_access_key" => &mut self.secret_access_key,
                "aws_session_token" => &mut self.session_token,
                "region" => &mut self.region,
                "endpoint_url" => &mut self.endpoint_url,
                _ => continue,
            };
            slot.get_or_insert_with(|| v.trim().to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_read_from_ini_sections() {
        let creds = "[default]\naws_access_key_id = A\n[work]\naws_access_key_id=W\naws_secret_access_key = S\n";
        let config = "[default]\nregion = us-east-1\n[profile work]\nregion = eu-west-1\nendpoint_url = http://127.0.0.1:9000\n";
        let mut p = Profile::default();
        p.merge(creds, "work");
        p.merge(config, "profile work");
        assert_eq!(
            p,
            Profile {
                access_key_id: Some("W".into()),
                secret_access_key: Some("S".into()),
                session_token: None,
                region: Some("eu-west-1".into()),
                endpoint_url: Some("http://127.0.0.1:9000".into()),
            }
        );
    }
}
