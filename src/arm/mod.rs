//! Azure Resource Manager client for Azure Stack Hub (see issue: ARM client).
