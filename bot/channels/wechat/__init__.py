"""The WeChat Official Account (服务号) channel: rules and sources in shared/WECHAT.md."""
