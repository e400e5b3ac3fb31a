// Remediator's identity and its least-privilege role, for one resource group.
//
// A module of remediator-sidecar.bicep and remediator-standalone.bicep (usable alone too):
//   - a user-assigned managed identity (the controller runs with REMEDIATOR_CREDENTIAL=managedIdentity
//     and REMEDIATOR_IDENTITY_CLIENT_ID set to its client id);
//   - a custom role whose actions are exactly `remediator permissions` (no wildcard, no delete),
//     assignable at this resource group, and its assignment to the identity here;
//   - with leader election on: the lease container and "Storage Blob Data Contributor" on that
//     container only (not on the account).
//
// Targets in other resource groups need the role there too: add those groups to the role's
// assignable scopes and assign it in each (docs/deploy.md, "Least privilege").

targetScope = 'resourceGroup'

@description('Name of the user-assigned managed identity.')
param identityName string

@description('Region of the identity.')
param location string = resourceGroup().location

@description('Name of the custom role: one per resource group, shared by every Remediator identity in it (role names are unique in a tenant, hence the suffix).')
param roleName string = 'Remediator operator ${resourceGroup().name} ${uniqueString(resourceGroup().id)}'

@description('Whether the replicas elect a leader on a blob lease: grants blob access on the lease container only.')
param leaderElection bool = false

@description('Storage account (in this resource group) holding the lease container; needed when leaderElection is true.')
param storageAccountName string = ''

@description('Blob container holding the lease blob.')
param leaseContainerName string = 'remediator'

// BEGIN role_actions: exactly controller.permissions.role_actions() (`remediator permissions`).
// Regenerate with `python deploy/sync_role.py`; tests/unit/test_deploy.py checks it.
var remediatorActions = [
  'Microsoft.App/containerApps/read'
  'Microsoft.App/containerApps/revisions/read'
  'Microsoft.App/containerApps/revisions/restart/action'
  'Microsoft.App/containerApps/write'
  'Microsoft.App/locations/containerappOperationResults/read'
  'Microsoft.App/locations/containerappOperationStatuses/read'
  'Microsoft.Cache/redis/forceReboot/action'
  'Microsoft.Cache/redis/read'
  'Microsoft.Cache/redis/write'
  'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/throughputSettings/read'
  'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/throughputSettings/write'
  'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/throughputSettings/read'
  'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/throughputSettings/write'
  'Microsoft.DocumentDB/locations/operationsStatus/read'
  'Microsoft.Insights/components/query/read'
  'Microsoft.Insights/metrics/read'
  'Microsoft.OperationalInsights/workspaces/query/read'
  'Microsoft.ResourceGraph/resources/read'
  'Microsoft.Resources/subscriptions/resourceGroups/read'
]
// END role_actions

// Built-in role: Storage Blob Data Contributor.
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: identityName
  location: location
}

resource role 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'remediator-operator')
  properties: {
    roleName: roleName
    description: 'Remediator: read signals and resources; scale, resize, restart and roll back Container Apps; change Cosmos DB throughput; scale and reboot Azure Cache for Redis. No delete, no wildcard.'
    type: 'CustomRole'
    permissions: [
      {
        actions: remediatorActions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

resource operatorAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, identity.id, role.id)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.name)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'Remediator acts on the targets in this resource group.'
  }
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = if (leaderElection) {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = if (leaderElection) {
  parent: storage
  name: 'default'
}

resource leaseContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = if (leaderElection) {
  parent: blobService
  name: leaseContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource leaseAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (leaderElection) {
  name: guid(leaseContainer.id, identity.id, storageBlobDataContributor)
  scope: leaseContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'Remediator holds its leader lease in this container only.'
  }
}

output identityId string = identity.id
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
output roleDefinitionId string = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.name)
@description('The blob endpoint for REMEDIATOR_LEADER_ELECTION.accountUrl (empty without leader election).')
output leaseAccountUrl string = leaderElection ? 'https://${storageAccountName}.blob.${environment().suffixes.storage}' : ''
