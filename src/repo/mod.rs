//! Publisher side: keys, init, add, refresh.
