"""What a delivery is made of: sets, the operator's set file, chosen photos, name templates,
thumbnails and share links."""
