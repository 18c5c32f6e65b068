"""Reading and writing records: file formats, the field map, input records and the prompts
reader, shared by every stage."""
