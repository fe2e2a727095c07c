"""What vulture (`make lint`, settings in pyproject.toml) cannot see used.

Each name here is used, but not by a call or read vulture can follow; each group says how. Any
other name vulture lists is dead code: remove it, do not list it. Never imported: vulture reads
it (`_` stands for any object).
"""

# gRPC calls a servicer's methods by the RPC's name (services/gateway/server.py).
_.Estimate
_.Distill
_.GetJob
_.ListJobs
_.CancelJob
_.DeleteJob
_.ListJobEvents
_.GetJobMetrics
_.UploadDataset
_.DownloadArtifact
_.SetAlias
_.GetAlias
_.ListAliases
_.RollbackAlias
_.ListTraceDays
_.CreateDatasetFromTraces
_.BuildAliasReport
_.DeleteDataset
_.CreateApiKey  # AdminService, beside the gateway's servicer
_.ListApiKeys
_.RevokeApiKey
_.ResolveCaller  # DirectoryService, the router's questions to the gateway
_.GetProjectAlias
_.ListProjectAliases
_.Chat  # services/router/server.py
_.ChatStream
_.intercept_service  # grpc.aio.ServerInterceptor (services/common/interceptors.py)

# Library protocols: a prometheus collector, an io.RawIOBase reader, pydantic-settings (its
# keyword parameters included), a function atexit runs, a torch autograd function.
_.describe  # services/common/metrics.py
_.capture_signals  # uvicorn.Server, overridden (services/router/http_api.py)
_.readable  # services/common/storage/base.py
_.readinto
model_config  # services/common/settings.py
_._tls_pair  # a pydantic model_validator (services/common/settings.py)
_._no_empty_token  # a pydantic field_validator (services/common/settings.py)
_.settings_customise_sources
dotenv_settings
file_secret_settings
_close_models  # services/common/providers/local.py
_.forward  # a torch.autograd.Function, and backward's gradient parameters (bond_loss.py)
g_ref

# Read by name with getattr (services/gateway/promotion.py: decide).
_.validator_pass_rate

# Attributes a library reads after we set them.
_.should_exit  # uvicorn.Server (services/router/http_api.py)
_.model_max_length  # a transformers tokenizer (services/common/models.py)
_.use_cache  # a transformers model config (services/trainer/backends/trl.py)
_.ftype  # llama.cpp quantize params (services/exporter/gguf.py)
_.nthread
_.log_errors  # RE2 options (services/common/safe_regex.py)

# Fields written out whole (JSON, protobuf): read by whoever reads the record.
created_at  # services/common/teacher_cache.py: the cache entry's JSON
rank  # services/exporter/merge.py: AdapterInfo
_.teacher_input_tokens  # services/gateway/estimate.py: EstimateResponse fields
_.teacher_output_tokens
_.judge_calls
_.training_tokens

# Ways in for tests/: the call processes running now, the rate limiter's pauses, and the BOND
# loss over whole sequences that the trainer's per-position loss is checked against.
_.pids  # services/common/providers/call_processes.py
_.pauses  # services/common/providers/limits.py
sequence_logps  # services/trainer/bond_loss.py
bond_loss

# Read by benchmarks/ (outside vulture's paths): the memory model's figure that
# torch.cuda.max_memory_allocated measures (benchmarks/trainer_step.py).
_.tensors_gb  # services/common/training_memory.py
