//! Supported Kubernetes versions and upgrade paths (aks-engine-azurestack v0.85.0).
