"""Task plugins: datasets turned into prompts, and completions turned into programs."""
