//! The one place where errors of the layers below become Kafka error codes.

use kafka_protocol::error::ResponseError;
use weir_log::LogError;
use weir_meta::MetaError;

/// Kafka error code for a log error.
pub fn log_error_code(e: &LogError) -> i16 {
    match e {
        LogError::Io(_) | LogError::Poisoned(_) | LogError::Shortage(_) => {
            ResponseError::KafkaStorageError.code()
        }
        LogError::CorruptBatch(_) | LogError::DecompressionLimit { .. } => {
            ResponseError::CorruptMessage.code()
        }
        LogError::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat.code(),
        LogError::RecordTooLarge { .. } => ResponseError::MessageTooLarge.code(),
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange.code(),
        LogError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber.code(),
        LogError::ProducerFenced { .. } => ResponseError::InvalidProducerEpoch.code(),
        LogError::ControlBatchFromClient => ResponseError::InvalidRecord.code(),
        LogError::CoordinatorFenced { .. } => ResponseError::TransactionCoordinatorFenced.code(),
        LogError::InvalidTxnState { .. } => ResponseError::InvalidTxnState.code(),
    }
}

/// Kafka error code for a metadata error.
pub fn meta_error_code(e: &MetaError) -> i16 {
    match e {
        MetaError::Io(_) | MetaError::Corrupt(_) => ResponseError::KafkaStorageError.code(),
        MetaError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists.code(),
        MetaError::InvalidTopicName(_) => ResponseError::InvalidTopicException.code(),
        MetaError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition.code(),
        MetaError::InvalidPartitions(_) => ResponseError::InvalidPartitions.code(),
        MetaError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor.code(),
        MetaError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment.code(),
        MetaError::InvalidConfig(_) => ResponseError::InvalidConfig.code(),
        MetaError::InvalidRequest(_) => ResponseError::InvalidRequest.code(),
        MetaError::NotController { .. } => ResponseError::NotController.code(),
        MetaError::Unavailable(_) => ResponseError::RequestTimedOut.code(),
        MetaError::UnknownBroker(_) => ResponseError::BrokerIdNotRegistered.code(),
        MetaError::StaleBrokerEpoch(_) => ResponseError::StaleBrokerEpoch.code(),
        MetaError::UnknownPartition(_) => ResponseError::UnknownTopicOrPartition.code(),
        MetaError::ElectionNotNeeded(_) => ResponseError::ElectionNotNeeded.code(),
        MetaError::PreferredLeaderNotAvailable(_) => {
            ResponseError::PreferredLeaderNotAvailable.code()
        }
        MetaError::EligibleLeadersNotAvailable(_) => {
            ResponseError::EligibleLeadersNotAvailable.code()
        }
        MetaError::StalePartitionState(_) => ResponseError::FencedLeaderEpoch.code(),
        MetaError::IneligibleReplica(_) => ResponseError::IneligibleReplica.code(),
        MetaError::NoReassignmentInProgress(_) => ResponseError::NoReassignmentInProgress.code(),
    }
}

pub const NONE: i16 = 0;

pub fn code(e: ResponseError) -> i16 {
    e.code()
}
