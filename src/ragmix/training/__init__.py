"""Training: DPR-style retriever training and joint RAG fine-tuning (Lewis et al., 2020)."""
