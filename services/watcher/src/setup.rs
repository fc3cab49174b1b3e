//! `watcher setup`: creates what a configuration needs, for local runs, tests and first deploys
//! (production accounts usually create these with their infrastructure code instead; the
//! resources are listed in docs/pipeline.md). Safe to run again.

use crate::config::{Mode, SetupSettings};
use anyhow::Context;
use aws_sdk_s3::types::{
    Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter,
    QueueConfiguration, S3KeyFilter,
};
use aws_sdk_sqs::types::QueueAttributeName;
use message_queue::sqs::SqsUrl;

/// Id prefix of the notification configurations this command owns; others are kept.
const NOTIFICATION_ID_PREFIX: &str = "recipe-mesh-";
/// Receives after which SQS moves an unreadable notification to its DLQ by itself.
const EVENTS_MAX_RECEIVE_COUNT: u32 = 5;

pub async fn run(s: &SetupSettings) -> anyhow::Result<()> {
    let w = &s.watch;
    let layout = w.layout.layout()?;
    object_source::create_bucket(&w.pipeline.source)
        .await
        .with_context(|| format!("creating {}", w.pipeline.source))?;
    println!("source {} is ready", w.pipeline.source);

    ensure_queue(&w.pipeline.queue, s.max_receive_count).await?;
    println!("job queue {} is ready", w.pipeline.queue);

    match w.mode {
        Mode::Poll => {
            seen_ledger::migrate(&w.ledger)
                .await
                .with_context(|| format!("creating the ledger {}", w.ledger))?;
            println!("ledger {} is ready", w.ledger);
        }
        Mode::Events => {
            let url = w
                .events_queue
                .as_deref()
                .context("events mode needs --events-queue / WATCHER_EVENTS_QUEUE_URL")?;
            anyhow::ensure!(
                url.starts_with("sqs://"),
                "S3 delivers notifications to SQS only; the events queue must be sqs://NAME?dlq=DLQ"
            );
            ensure_queue(url, EVENTS_MAX_RECEIVE_COUNT).await?;
            let bucket = match object_source::parse_url(&w.pipeline.source)? {
                object_source::Location::S3 { bucket, .. } => bucket,
                object_source::Location::Local { .. } => {
                    anyhow::bail!("events mode needs an S3 bucket as the source")
                }
            };
            let prefixes = layout.prefixes().into_iter().map(str::to_string).collect();
            configure_notifications(&bucket, &SqsUrl::parse(url)?.queue, prefixes).await?;
            println!("S3 notifications from {bucket} to {url} are configured");
        }
    }
    Ok(())
}

/// Creates an SQS queue and its DLQ, or the embedded queue's file.
async fn ensure_queue(url: &str, max_receive_count: u32) -> anyhow::Result<()> {
    if url.starts_with("sqs://") {
        let target = SqsUrl::parse(url)?;
        let dlq = target.dlq.with_context(|| {
            format!("{url}: name its dead-letter queue, e.g. sqs://NAME?dlq=NAME-dlq")
        })?;
        message_queue::create_sqs_queues(&target.queue, &dlq, max_receive_count)
            .await
            .with_context(|| format!("creating {url}"))?;
    } else {
        message_queue::open(url)
            .await
            .with_context(|| format!("creating {url}"))?;
    }
    Ok(())
}

/// Lets S3 send to the queue and points `ObjectCreated` notifications for each prefix at it,
/// keeping the bucket's other notification configurations.
async fn configure_notifications(
    bucket: &str,
    queue: &str,
    prefixes: Vec<String>,
) -> anyhow::Result<()> {
    let config = aws_setup::load().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue_url = sqs
        .get_queue_url()
        .queue_name(queue)
        .send()
        .await
        .with_context(|| format!("looking up queue {queue}"))?
        .queue_url
        .with_context(|| format!("SQS returned no URL for {queue}"))?;
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .with_context(|| format!("reading the ARN of {queue}"))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .with_context(|| format!("SQS returned no ARN for {queue}"))?;
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "recipe-mesh-s3-notifications",
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnLike": {"aws:SourceArn": format!("arn:aws:s3:::{bucket}")}}
        }]
    });
    sqs.set_queue_attributes()
        .queue_url(&queue_url)
        .attributes(QueueAttributeName::Policy, policy.to_string())
        .send()
        .await
        .with_context(|| format!("allowing S3 to send to {queue}"))?;

    let path_style = object_source::s3::endpoint_is_overridden(&config);
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(path_style)
            .build(),
    );
    let current = match s3
        .get_bucket_notification_configuration()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(current) => current,
        // Some emulators answer an empty configuration with a body the SDK cannot read (moto:
        // `<GetBucketNotificationResponse/>`). A 200 means the bucket is readable and, here,
        // that nothing is configured; any other failure stops before anything is overwritten.
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 200) => {
            tracing::warn!(
                bucket,
                "unreadable empty notification configuration; treating it as empty"
            );
            aws_sdk_s3::operation::get_bucket_notification_configuration::GetBucketNotificationConfigurationOutput::builder().build()
        }
        Err(e) => {
            return Err(sdk_error(
                e,
                format!("reading the notification configuration of {bucket}"),
            ));
        }
    };
    let mut queues: Vec<QueueConfiguration> = current
        .queue_configurations
        .unwrap_or_default()
        .into_iter()
        .filter(|q| {
            !q.id
                .as_deref()
                .is_some_and(|id| id.starts_with(NOTIFICATION_ID_PREFIX))
        })
        .collect();
    for (i, prefix) in prefixes.iter().enumerate() {
        let filter = NotificationConfigurationFilter::builder()
            .key(
                S3KeyFilter::builder()
                    .filter_rules(
                        FilterRule::builder()
                            .name(FilterRuleName::Prefix)
                            .value(prefix)
                            .build(),
                    )
                    .build(),
            )
            .build();
        queues.push(
            QueueConfiguration::builder()
                .id(format!("{NOTIFICATION_ID_PREFIX}{i}"))
                .queue_arn(&queue_arn)
                .events(Event::from("s3:ObjectCreated:*"))
                .filter(filter)
                .build()
                .context("building a queue notification configuration")?,
        );
    }
    let configuration = NotificationConfiguration::builder()
        .set_queue_configurations(Some(queues))
        .set_topic_configurations(current.topic_configurations)
        .set_lambda_function_configurations(current.lambda_function_configurations)
        .set_event_bridge_configuration(current.event_bridge_configuration)
        .build();
    s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(configuration)
        .send()
        .await
        .with_context(|| format!("configuring notifications of {bucket}"))?;
    Ok(())
}

/// The SDK's errors print one word unless asked for their whole chain.
fn sdk_error(e: impl std::error::Error + Send + Sync + 'static, what: String) -> anyhow::Error {
    anyhow::anyhow!("{what}: {}", aws_sdk_s3::error::DisplayErrorContext(e))
}
