//! BERT-family sentence encoders from a Hugging Face model folder: `config.json`,
//! `tokenizer.json`, `model.safetensors`, and the sentence-transformers extras when present
//! (`1_Pooling/config.json` for the pooling, `modules.json` for L2 normalisation,
//! `sentence_bert_config.json` for the truncation length).
//!
//! Served as input `text` BYTES `[-1]` (UTF-8) → output `embedding` FP32 `[-1, hidden]`.

use std::path::Path;

use candle_core::{DType, Device, Tensor as CandleTensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use serde::Deserialize;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::{inference_error, load_error, read_weights};
use crate::backend::{Backend, BackendError};
use crate::format::{DataType, Dim, Signature, Tensor, TensorData, TensorSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pooling {
    Mean,
    Cls,
    Max,
    MeanSqrtLength,
}

/// `1_Pooling/config.json`; mean pooling when none of these is set.
#[derive(Deserialize, Default)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: usize,
}

/// A loaded sentence encoder.
pub struct SentenceEncoder {
    model: BertModel,
    tokenizer: Tokenizer,
    pooling: Pooling,
    normalize: bool,
    hidden: usize,
    signature: Signature,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, BackendError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| load_error(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(load_error(path, e)),
    }
}

impl SentenceEncoder {
    /// Whether a version folder holds a Hugging Face encoder.
    pub fn is_encoder_dir(dir: &Path) -> bool {
        ["config.json", "tokenizer.json", "model.safetensors"]
            .iter()
            .all(|f| dir.join(f).is_file())
    }

    pub fn load(dir: &Path) -> Result<SentenceEncoder, BackendError> {
        let config_path = dir.join("config.json");
        let config: Config =
            read_json(&config_path)?.ok_or_else(|| load_error(&config_path, "missing"))?;
        if let Some(kind) = config.model_type.as_deref().filter(|k| *k != "bert") {
            return Err(load_error(
                &config_path,
                format!("model_type \"{kind}\" is not served; weir serves BERT-family encoders (model_type \"bert\")"),
            ));
        }
        let weights_path = dir.join("model.safetensors");
        let weights = read_weights(&weights_path)?;
        let model = BertModel::load(
            VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu),
            &config,
        )
        .map_err(|e| load_error(&weights_path, e))?;

        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| load_error(&tokenizer_path, e))?;
        let max_length = read_json::<SentenceBertConfig>(&dir.join("sentence_bert_config.json"))?
            .map_or(config.max_position_embeddings, |c| c.max_seq_length)
            .min(config.max_position_embeddings);
        // Pad each batch to its longest text, not to the tokenizer's fixed length: short texts
        // then cost what they are (16x faster for MiniLM's 128-token default).
        let padding = tokenizer.get_padding().cloned().unwrap_or_default();
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..padding
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length,
                ..TruncationParams::default()
            }))
            .map_err(|e| load_error(&tokenizer_path, e))?;

        let pooling = match read_json::<PoolingConfig>(&dir.join("1_Pooling/config.json"))?
            .unwrap_or_default()
        {
            c if c.pooling_mode_cls_token => Pooling::Cls,
            c if c.pooling_mode_max_tokens => Pooling::Max,
            c if c.pooling_mode_mean_sqrt_len_tokens => Pooling::MeanSqrtLength,
            _ => Pooling::Mean,
        };
        let normalize = read_json::<Vec<ModuleEntry>>(&dir.join("modules.json"))?
            .unwrap_or_default()
            .iter()
            .any(|m| m.kind.ends_with(".Normalize"));
        let hidden = config.hidden_size;
        Ok(SentenceEncoder {
            model,
            tokenizer,
            pooling,
            normalize,
            hidden,
            signature: Signature {
                inputs: vec![TensorSpec {
                    name: "text".to_owned(),
                    datatype: DataType::Bytes,
                    shape: vec![Dim::Variable],
                }],
                outputs: vec![TensorSpec {
                    name: "embedding".to_owned(),
                    datatype: DataType::Fp32,
                    shape: vec![Dim::Variable, Dim::Fixed(hidden as u64)],
                }],
            },
        })
    }

    /// Token ids, type ids and attention mask for a batch, each `[texts, longest]`.
    fn tokenize(&self, texts: Vec<String>) -> Result<[CandleTensor; 3], BackendError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts, true)
            .map_err(|e| BackendError::InvalidInput(format!("cannot tokenize: {e}")))?;
        let rows = encodings.len();
        let length = encodings.first().map_or(0, |e| e.len());
        let mut ids = Vec::with_capacity(rows * length);
        let mut types = Vec::with_capacity(rows * length);
        let mut mask = Vec::with_capacity(rows * length);
        for encoding in &encodings {
            ids.extend_from_slice(encoding.get_ids());
            types.extend_from_slice(encoding.get_type_ids());
            mask.extend_from_slice(encoding.get_attention_mask());
        }
        let tensor = |values: Vec<u32>| {
            CandleTensor::from_vec(values, (rows, length), &Device::Cpu).map_err(inference_error)
        };
        Ok([tensor(ids)?, tensor(types)?, tensor(mask)?])
    }

    fn embed(&self, texts: Vec<String>) -> candle_core::Result<Vec<f32>> {
        let [ids, types, mask] = self
            .tokenize(texts)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let pooled = match self.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Max => {
                // Padding positions get a large negative value so they never win the max.
                let penalty = ((&mask - 1.0)? * 1e9)?;
                hidden.broadcast_add(&penalty)?.max(1)?
            }
            Pooling::Mean | Pooling::MeanSqrtLength => {
                let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
                let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
                let counts = if self.pooling == Pooling::Mean {
                    counts
                } else {
                    counts.sqrt()?
                };
                summed.broadcast_div(&counts)?
            }
        };
        let pooled = if self.normalize {
            let norms = pooled
                .sqr()?
                .sum_keepdim(1)?
                .sqrt()?
                .clamp(1e-12, f64::MAX)?;
            pooled.broadcast_div(&norms)?
        } else {
            pooled
        };
        pooled.flatten_all()?.to_vec1::<f32>()
    }
}

impl Backend for SentenceEncoder {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn platform(&self) -> &'static str {
        "candle_bert"
    }

    fn sequence_length(&self, inputs: &[Tensor]) -> Option<usize> {
        let TensorData::Bytes(elements) = &inputs.first()?.data else {
            return None;
        };
        elements
            .iter()
            .filter_map(|bytes| std::str::from_utf8(bytes).ok())
            .filter_map(|text| self.tokenizer.encode(text, true).ok())
            .map(|encoding| encoding.len())
            .max()
    }

    fn infer(&self, inputs: Vec<Tensor>, _outputs: &[String]) -> Result<Vec<Tensor>, BackendError> {
        let input = inputs
            .into_iter()
            .next()
            .ok_or_else(|| BackendError::Inference("no input given".to_owned()))?;
        let TensorData::Bytes(elements) = input.data else {
            return Err(BackendError::InvalidInput(
                "input 'text' must be BYTES".to_owned(),
            ));
        };
        let texts = elements
            .into_iter()
            .enumerate()
            .map(|(index, bytes)| {
                String::from_utf8(bytes).map_err(|_| {
                    BackendError::InvalidInput(format!(
                        "input 'text' element {index} is not valid UTF-8"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rows = texts.len();
        let data = if rows == 0 {
            Vec::new()
        } else {
            self.embed(texts).map_err(inference_error)?
        };
        Ok(vec![Tensor::new(
            "embedding",
            vec![rows, self.hidden],
            TensorData::Fp32(data),
        )])
    }
}
