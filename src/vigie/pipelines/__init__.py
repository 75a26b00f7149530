"""vigie.pipelines."""
