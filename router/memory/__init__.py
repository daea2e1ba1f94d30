"""Memory: retrieval before a call and storage after it, behind one backend interface."""
