//! Kafka's DescribeConfigs: a topic's configuration as Sluice keeps it
//! (the topic record's settings, server defaults for what it leaves
//! unset) under Kafka's names, plus the fixed behaviour a Kafka user asks
//! about (cleanup.policy=delete, ...), read-only; and this proxy's broker
//! defaults. AlterConfigs is not served: topic settings are given at
//! creation.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_metadata::records::TopicConfig;

use super::admin::refusal;
use super::{KafkaService, code};

/// Kafka's resource types.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;

/// Kafka's config sources.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const DEFAULT_CONFIG: i8 = 5;

/// Kafka's config value types.
#[derive(Clone, Copy, Debug)]
enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    List = 7,
}

/// One config as described.
#[derive(Debug)]
struct Entry {
    name: &'static str,
    value: String,
    source: i8,
    read_only: bool,
    config_type: ConfigType,
    documentation: &'static str,
    /// Where else the value is set, in precedence order after the entry
    /// itself: (name, value, source).
    synonyms: Vec<(&'static str, String, i8)>,
}

/// A topic setting Sluice keeps: its Kafka name, the broker-wide name of
/// its default, its type and what it does.
struct TopicSetting {
    name: &'static str,
    broker_name: &'static str,
    config_type: ConfigType,
    documentation: &'static str,
    value: fn(&TopicConfig) -> Option<String>,
}

const TOPIC_SETTINGS: &[TopicSetting] = &[
    TopicSetting {
        name: "retention.ms",
        broker_name: "log.retention.ms",
        config_type: ConfigType::Long,
        documentation: "Whole segments whose newest record is older than this (ms) are deleted; -1 keeps data forever.",
        value: |c| c.retention_ms.map(|v| v.to_string()),
    },
    TopicSetting {
        name: "retention.bytes",
        broker_name: "log.retention.bytes",
        config_type: ConfigType::Long,
        documentation: "The oldest whole segments are deleted while a partition holds more bytes than this; -1: no limit.",
        value: |c| c.retention_bytes.map(|v| v.to_string()),
    },
    TopicSetting {
        name: "segment.bytes",
        broker_name: "log.segment.bytes",
        config_type: ConfigType::Int,
        documentation: "A partition rolls to a new segment once the open one holds this many bytes.",
        value: |c| c.segment_bytes.map(|v| v.to_string()),
    },
    TopicSetting {
        name: "segment.ms",
        broker_name: "log.roll.ms",
        config_type: ConfigType::Long,
        documentation: "A partition rolls to a new segment once the open one is this old (ms).",
        value: |c| c.segment_ms.map(|v| v.to_string()),
    },
    TopicSetting {
        name: "max.message.bytes",
        broker_name: "message.max.bytes",
        config_type: ConfigType::Int,
        documentation: "The largest record batch accepted, in bytes.",
        value: |c| c.max_batch_bytes.map(|v| v.to_string()),
    },
];

/// What every Sluice topic does and cannot be set otherwise: (name, value,
/// type, documentation).
const FIXED_TOPIC_CONFIGS: &[(&str, &str, ConfigType, &str)] = &[
    (
        "cleanup.policy",
        "delete",
        ConfigType::List,
        "Old segments are deleted by retention; Sluice does not compact.",
    ),
    (
        "compression.type",
        "producer",
        ConfigType::String,
        "Batches are stored as the producer compressed them.",
    ),
    (
        "message.timestamp.type",
        "CreateTime",
        ConfigType::String,
        "Records keep the timestamps their producer gave them.",
    ),
];

/// Describes every resource asked for.
pub(super) async fn describe_configs(
    service: &KafkaService,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let mut results = Vec::new();
    for resource in request.resources {
        let mut result = DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        let entries = match resource.resource_type {
            TOPIC => topic_entries(service, resource.resource_name.as_str()).await,
            BROKER => broker_entries(service, resource.resource_name.as_str()),
            other => Err((code::INVALID_REQUEST, unsupported_type(other))),
        };
        match entries {
            Ok(entries) => {
                let wanted = resource.configuration_keys.as_deref();
                result.configs = entries
                    .into_iter()
                    .filter(|e| wanted.is_none_or(|keys| keys.iter().any(|k| k.as_str() == e.name)))
                    .map(|e| encode(e, request.include_synonyms, request.include_documentation))
                    .collect();
            }
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(StrBytes::from_string(message));
            }
        }
        result.resource_name = resource.resource_name;
        results.push(result);
    }
    let mut response = DescribeConfigsResponse::default();
    response.results = results;
    response
}

fn unsupported_type(resource_type: i8) -> String {
    format!(
        "resource type {resource_type} is not supported; Sluice describes topics ({TOPIC}) and brokers ({BROKER})"
    )
}

async fn topic_entries(service: &KafkaService, topic: &str) -> Result<Vec<Entry>, (i16, String)> {
    let set = service.admin.topic_config(topic).await.map_err(|e| {
        let (code, message) = refusal(&tonic::Status::from(e));
        (code, message.map(|m| m.to_string()).unwrap_or_default())
    })?;
    Ok(topic_config_entries(&set, service.admin.defaults()))
}

/// A topic's entries: what the topic sets, else the server's default.
fn topic_config_entries(set: &TopicConfig, defaults: &TopicConfig) -> Vec<Entry> {
    let mut entries = Vec::new();
    for setting in TOPIC_SETTINGS {
        let own = (setting.value)(set);
        let default = (setting.value)(defaults);
        let mut synonyms = Vec::new();
        if let Some(own) = &own {
            synonyms.push((setting.name, own.clone(), DYNAMIC_TOPIC_CONFIG));
        }
        if let Some(default) = &default {
            synonyms.push((setting.broker_name, default.clone(), DEFAULT_CONFIG));
        }
        let (value, source) = match (own, default) {
            (Some(own), _) => (own, DYNAMIC_TOPIC_CONFIG),
            (None, Some(default)) => (default, DEFAULT_CONFIG),
            (None, None) => continue,
        };
        entries.push(Entry {
            name: setting.name,
            value,
            source,
            read_only: false,
            config_type: setting.config_type,
            documentation: setting.documentation,
            synonyms,
        });
    }
    for (name, value, config_type, documentation) in FIXED_TOPIC_CONFIGS {
        entries.push(Entry {
            name,
            value: (*value).to_owned(),
            source: DEFAULT_CONFIG,
            read_only: true,
            config_type: *config_type,
            documentation,
            synonyms: vec![(name, (*value).to_owned(), DEFAULT_CONFIG)],
        });
    }
    entries
}

/// This proxy's broker-wide settings: the topic defaults it knows, and
/// topic creation on first use. `name` is a broker id; only this proxy's
/// own (or "", the cluster default) can be described here.
fn broker_entries(service: &KafkaService, name: &str) -> Result<Vec<Entry>, (i16, String)> {
    let own = service.node_id.to_string();
    if !name.is_empty() && name != own {
        return Err((
            code::INVALID_REQUEST,
            format!("this is broker {own}; ask broker {name:?} itself about its configs"),
        ));
    }
    let defaults = service.admin.defaults();
    let mut entries: Vec<Entry> = TOPIC_SETTINGS
        .iter()
        .filter_map(|setting| {
            let value = (setting.value)(defaults)?;
            Some(Entry {
                name: setting.broker_name,
                value: value.clone(),
                source: DEFAULT_CONFIG,
                read_only: true,
                config_type: setting.config_type,
                documentation: setting.documentation,
                synonyms: vec![(setting.broker_name, value, DEFAULT_CONFIG)],
            })
        })
        .collect();
    let auto_create = service.auto_create_partitions;
    entries.push(Entry {
        name: "auto.create.topics.enable",
        value: auto_create.is_some().to_string(),
        source: DEFAULT_CONFIG,
        read_only: true,
        config_type: ConfigType::Boolean,
        documentation: "Whether a Metadata request naming an unknown topic creates it.",
        synonyms: Vec::new(),
    });
    if let Some(partitions) = auto_create {
        entries.push(Entry {
            name: "num.partitions",
            value: partitions.to_string(),
            source: DEFAULT_CONFIG,
            read_only: true,
            config_type: ConfigType::Int,
            documentation: "Partitions of a topic created on first use.",
            synonyms: Vec::new(),
        });
    }
    Ok(entries)
}

fn encode(entry: Entry, synonyms: bool, documentation: bool) -> DescribeConfigsResourceResult {
    let mut result = DescribeConfigsResourceResult::default();
    result.name = StrBytes::from_static_str(entry.name);
    result.value = Some(StrBytes::from_string(entry.value));
    result.read_only = entry.read_only;
    result.config_source = entry.source;
    result.config_type = entry.config_type as i8;
    result.documentation = documentation.then(|| StrBytes::from_static_str(entry.documentation));
    if synonyms {
        result.synonyms = entry
            .synonyms
            .into_iter()
            .map(|(name, value, source)| {
                let mut synonym = DescribeConfigsSynonym::default();
                synonym.name = StrBytes::from_static_str(name);
                synonym.value = Some(StrBytes::from_string(value));
                synonym.source = source;
                synonym
            })
            .collect();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> TopicConfig {
        TopicConfig {
            retention_ms: Some(604_800_000),
            retention_bytes: Some(-1),
            segment_bytes: Some(1 << 30),
            segment_ms: Some(604_800_000),
            max_batch_bytes: Some(1 << 20),
        }
    }

    fn find<'a>(entries: &'a [Entry], name: &str) -> &'a Entry {
        entries
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no {name} in {entries:?}"))
    }

    #[test]
    fn a_topic_setting_overrides_the_server_default() {
        let set = TopicConfig {
            retention_ms: Some(3_600_000),
            ..TopicConfig::default()
        };
        let entries = topic_config_entries(&set, &defaults());
        let retention = find(&entries, "retention.ms");
        assert_eq!(retention.value, "3600000");
        assert_eq!(retention.source, DYNAMIC_TOPIC_CONFIG);
        assert!(!retention.read_only);
        assert_eq!(
            retention.synonyms,
            [
                ("retention.ms", "3600000".to_owned(), DYNAMIC_TOPIC_CONFIG),
                ("log.retention.ms", "604800000".to_owned(), DEFAULT_CONFIG),
            ]
        );
        let bytes = find(&entries, "retention.bytes");
        assert_eq!(bytes.value, "-1");
        assert_eq!(bytes.source, DEFAULT_CONFIG);
        assert_eq!(find(&entries, "max.message.bytes").value, "1048576");
        let cleanup = find(&entries, "cleanup.policy");
        assert_eq!(cleanup.value, "delete");
        assert!(cleanup.read_only);
    }

    #[test]
    fn a_setting_without_a_value_anywhere_is_left_out() {
        let entries = topic_config_entries(&TopicConfig::default(), &TopicConfig::default());
        assert!(entries.iter().all(|e| e.read_only), "{entries:?}");
    }

    #[test]
    fn documentation_and_synonyms_only_when_asked() {
        let entry = || {
            let entries = topic_config_entries(&TopicConfig::default(), &defaults());
            entries.into_iter().next().expect("an entry")
        };
        let bare = encode(entry(), false, false);
        assert!(bare.synonyms.is_empty());
        assert_eq!(bare.documentation, None);
        assert_eq!(bare.config_type, ConfigType::Long as i8);
        let full = encode(entry(), true, true);
        assert_eq!(full.synonyms.len(), 1);
        assert_eq!(full.synonyms[0].name.as_str(), "log.retention.ms");
        assert!(full.documentation.is_some_and(|d| !d.is_empty()));
    }
}
