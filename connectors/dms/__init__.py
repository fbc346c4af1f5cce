"""A provincial document-management system (hệ thống quản lý văn bản và điều hành): its simulator and
synthetic edXML documents (docs/documents.md)."""
