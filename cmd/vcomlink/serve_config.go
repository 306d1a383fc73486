package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"gopkg.in/yaml.v3"
)

// repeatable marks a flag type that may be given several times, and so may
// take a list in a --config file.
type repeatable interface {
	repeatable()
}

func (*stringList) repeatable() {}
func (authFlag) repeatable()    {}

// applyConfigFile sets the flags that the YAML file at path names, except
// those in set, which the command line set. The file is a mapping from flag
// names without dashes to a value, or to a list of values for a repeatable
// flag. A mistake names the file and line.
func applyConfigFile(fs *flag.FlagSet, path string, set map[string]bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read --config file: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("%s:%d: the file must be a mapping from flag names to values, such as \"tpm: /dev/tpmrm0\"", path, root.Line)
	}

	seen := make(map[string]int)
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, value := root.Content[i], root.Content[i+1]
		name := key.Value
		if line, dup := seen[name]; dup {
			return fmt.Errorf("%s:%d: %q is set again; it was set on line %d", path, key.Line, name, line)
		}
		seen[name] = key.Line

		if name == "check" {
			return fmt.Errorf("%s:%d: \"check\" may be given only on the command line, because a file that sets it would stop vcomlink serve from serving", path, key.Line)
		}
		fl := fs.Lookup(name)
		if fl == nil || name == "config" {
			return fmt.Errorf("%s:%d: unknown setting %q; the settings are the flags of vcomlink serve without their dashes (see vcomlink serve --help)", path, key.Line, name)
		}
		values, err := configValues(fl, value)
		if err != nil {
			return fmt.Errorf("%s:%d: %s: %v", path, value.Line, name, err)
		}
		if set[name] {
			continue
		}
		for _, v := range values {
			if err := fl.Value.Set(v); err != nil {
				return fmt.Errorf("%s:%d: invalid %s %q: %v", path, value.Line, name, v, explainValueError(fl, v, err))
			}
		}
	}
	return nil
}

// configValues returns the values of one setting: one scalar, or a list of
// scalars for a repeatable flag.
func configValues(fl *flag.Flag, node *yaml.Node) ([]string, error) {
	switch node.Kind {
	case yaml.ScalarNode:
		return []string{node.Value}, nil
	case yaml.SequenceNode:
		if _, ok := fl.Value.(repeatable); !ok {
			return nil, errors.New("takes one value, not a list")
		}
		var values []string
		for _, item := range node.Content {
			if item.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: each item must be a single value", item.Line)
			}
			values = append(values, item.Value)
		}
		if len(values) == 0 {
			return nil, errors.New("the list is empty")
		}
		return values, nil
	}
	return nil, errors.New("must be a value or a list of values")
}
