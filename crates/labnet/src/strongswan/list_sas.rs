//! What `swanctl --list-sas --pretty` says, read into [`SaInfo`]s.

/// One IKE SA as listed by `swanctl --list-sas`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaInfo {
    /// Connection name.
    pub name: String,
    /// IKE SA state, e.g. `ESTABLISHED`.
    pub state: String,
    /// Our address.
    pub local_host: String,
    /// Peer address.
    pub remote_host: String,
    /// Our IKE identity.
    pub local_id: String,
    /// Peer's IKE identity.
    pub remote_id: String,
    /// Negotiated IKE algorithms as swanctl prints them, e.g.
    /// `AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384`.
    pub ike_algorithms: String,
    /// Virtual IPs assigned to us.
    pub local_vips: Vec<String>,
    /// Virtual IPs assigned to the peer.
    pub remote_vips: Vec<String>,
    /// CHILD_SAs of this IKE SA.
    pub children: Vec<ChildSaInfo>,
}

/// One CHILD_SA of an [`SaInfo`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildSaInfo {
    /// Child config name.
    pub name: String,
    /// State, e.g. `INSTALLED`.
    pub state: String,
    /// `TUNNEL`/`TRANSPORT`.
    pub mode: String,
    /// Whether ESP is UDP-encapsulated.
    pub encap: bool,
    /// Negotiated algorithms as swanctl prints them, e.g. `ESP:AES_GCM_16-256`.
    pub algorithms: String,
    /// Local traffic selectors.
    pub local_ts: Vec<String>,
    /// Remote traffic selectors.
    pub remote_ts: Vec<String>,
    /// Packets received through this CHILD_SA.
    pub packets_in: u64,
    /// Packets sent through this CHILD_SA.
    pub packets_out: u64,
}

/// A node of swanctl's `--pretty` tree.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Value(String),
    List(Vec<String>),
    Section(Vec<(String, Node)>),
}

impl Node {
    fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Section(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn value(&self, key: &str) -> String {
        match self.get(key) {
            Some(Node::Value(v)) => v.clone(),
            _ => String::new(),
        }
    }
    fn list(&self, key: &str) -> Vec<String> {
        match self.get(key) {
            Some(Node::List(v)) => v.clone(),
            Some(Node::Value(v)) => vec![v.clone()],
            _ => Vec::new(),
        }
    }
    fn sections(&self) -> impl Iterator<Item = (&str, &Node)> {
        let entries: &[(String, Node)] = match self {
            Node::Section(e) => e,
            _ => &[],
        };
        entries
            .iter()
            .filter(|(_, v)| matches!(v, Node::Section(_)))
            .map(|(k, v)| (k.as_str(), v))
    }
}

/// `swanctl --list-sas --pretty` output we cannot read; the message says where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SwanctlOutputError(String);

impl From<&str> for SwanctlOutputError {
    fn from(why: &str) -> Self {
        Self(why.to_owned())
    }
}

/// Parses the line-based `--pretty` format: `name {` … `}`, `key = value`, `key = [` … `]`.
/// Returns the top-level events (each `list-sa event { … }`).
fn parse_pretty(text: &str) -> Result<Vec<Node>, SwanctlOutputError> {
    let mut stack: Vec<(String, Vec<(String, Node)>)> = vec![(String::new(), Vec::new())];
    let mut list: Option<(String, Vec<String>)> = None;
    for (no, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some((key, items)) = list.as_mut() {
            if line == "]" {
                let (key, items) = (std::mem::take(key), std::mem::take(items));
                list = None;
                let top = stack.last_mut().ok_or("parser stack empty")?;
                top.1.push((key, Node::List(items)));
            } else {
                items.push(line.to_owned());
            }
            continue;
        }
        if line == "}" {
            let (name, entries) = stack.pop().ok_or("parser stack empty")?;
            let parent = stack
                .last_mut()
                .ok_or_else(|| SwanctlOutputError(format!("line {}: unbalanced }}", no + 1)))?;
            parent.1.push((name, Node::Section(entries)));
        } else if let Some((key, value)) = line.split_once(" = ") {
            if value == "[" {
                list = Some((key.to_owned(), Vec::new()));
            } else {
                let top = stack.last_mut().ok_or("parser stack empty")?;
                top.1.push((key.to_owned(), Node::Value(value.to_owned())));
            }
        } else if let Some(name) = line.strip_suffix(" {") {
            stack.push((name.to_owned(), Vec::new()));
        } else if let Some(key) = line.strip_suffix(" =") {
            // A key with an empty value.
            let top = stack.last_mut().ok_or("parser stack empty")?;
            top.1.push((key.to_owned(), Node::Value(String::new())));
        } else {
            return Err(SwanctlOutputError(format!(
                "line {}: cannot parse {raw:?}",
                no + 1
            )));
        }
    }
    if stack.len() != 1 || list.is_some() {
        return Err("unterminated section or list".into());
    }
    let (_, entries) = stack.pop().ok_or("parser stack empty")?;
    Ok(entries.into_iter().map(|(_, v)| v).collect())
}

/// `ALG[-KEYSIZE]`, as swanctl prints algorithms.
fn alg(node: &Node, alg_key: &str, size_key: &str) -> Option<String> {
    let a = node.value(alg_key);
    if a.is_empty() {
        return None;
    }
    let size = node.value(size_key);
    Some(if size.is_empty() {
        a
    } else {
        format!("{a}-{size}")
    })
}

pub(super) fn parse_list_sas(text: &str) -> Result<Vec<SaInfo>, SwanctlOutputError> {
    let mut sas = Vec::new();
    for event in parse_pretty(text)? {
        for (name, ike) in event.sections() {
            let ike_algorithms = [
                alg(ike, "encr-alg", "encr-keysize"),
                alg(ike, "integ-alg", "integ-keysize"),
                alg(ike, "prf-alg", ""),
                alg(ike, "dh-group", ""),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("/");
            let mut children = Vec::new();
            if let Some(child_sas) = ike.get("child-sas") {
                for (_, child) in child_sas.sections() {
                    let algs = [
                        alg(child, "encr-alg", "encr-keysize"),
                        alg(child, "integ-alg", "integ-keysize"),
                        alg(child, "dh-group", ""),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("/");
                    children.push(ChildSaInfo {
                        name: child.value("name"),
                        state: child.value("state"),
                        mode: child.value("mode"),
                        encap: child.value("encap") == "yes",
                        algorithms: format!("{}:{algs}", child.value("protocol")),
                        local_ts: child.list("local-ts"),
                        remote_ts: child.list("remote-ts"),
                        packets_in: child.value("packets-in").parse().unwrap_or(0),
                        packets_out: child.value("packets-out").parse().unwrap_or(0),
                    });
                }
            }
            sas.push(SaInfo {
                name: name.to_owned(),
                state: ike.value("state"),
                local_host: ike.value("local-host"),
                remote_host: ike.value("remote-host"),
                local_id: ike.value("local-id"),
                remote_id: ike.value("remote-id"),
                ike_algorithms,
                local_vips: ike.list("local-vips"),
                remote_vips: ike.list("remote-vips"),
                children,
            });
        }
    }
    Ok(sas)
}
