"""The one place each request's rules live: defaults applied, every field checked, typed values.

Each stage's servicer, the gateway's preflight and estimate, and the client use these; an
InvalidArgument names the field and its allowed range. One module per request:

- `generate`: GenerateRequest → GenerateSpec (n_samples, teacher temperature, rate limits)
- `judge`: JudgeConfig → JudgeSpec (top_k, min_score, min_margin, the judge tree)
- `train`: TrainRequest → TrainConfig; LoRA/BOND/training settings → TrainSettings
- `export`: ExportRequest → ExportJob; ExportSettings (quantizations, smoke test)
- `distill`: DistillSpec → DistillPlan (all of the above, plus eval, budget, alias)
- `names`: job ids, job resource names, alias names
- `layout`: every artifact key under `jobs/{id}/`
"""
